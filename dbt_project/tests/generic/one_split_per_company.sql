{#- Splits are disjoint by company: no company (sec10k company, FinQA ticker, TAT-QA document) in two
    splits, also across sources (split_group maps a FinQA ticker to its 10-K company). -#}
{% test one_split_per_company(model, company_column='split_group', split_column='split') %}
select {{ company_column }}, count(distinct {{ split_column }}) as n_splits
from {{ model }}
group by all
having count(distinct {{ split_column }}) > 1
{% endtest %}
