{#- Splits are disjoint by company: no company (sec10k company, FinQA ticker, TAT-QA document) in two splits. -#}
{% test one_split_per_company(model, company_column='company', split_column='split') %}
select source, {{ company_column }}, count(distinct {{ split_column }}) as n_splits
from {{ model }}
group by all
having count(distinct {{ split_column }}) > 1
{% endtest %}
