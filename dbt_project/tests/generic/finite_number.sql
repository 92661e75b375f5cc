{#- The column holds a finite number (not NULL, NaN or +/-infinity). -#}
{% test finite_number(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} is null or isnan({{ column_name }}) or isinf({{ column_name }})
{% endtest %}
