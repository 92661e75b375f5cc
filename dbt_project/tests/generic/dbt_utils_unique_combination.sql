{#- The combination of `columns` is unique (a local stand-in for dbt_utils.unique_combination_of_columns,
    so the project needs no package download). -#}
{% test dbt_utils_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
