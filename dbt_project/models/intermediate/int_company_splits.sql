-- Deterministic train / val / test assignment per company (sec10k company, FinQA ticker, TAT-QA document).
-- A company's split is a pure function of its own key: md5(split_salt || group_source || ':' || split_group)
-- mapped to [0, 1) (macro unit_interval) and compared with the cumulative fractions in var('split_fractions').
-- Adding or removing other companies never moves it.
-- split_group is the real-world company a split is decided for: a FinQA ticker of one of the 10-K
-- companies (seeds/company_tickers.csv, e.g. AAPL -> apple) shares that company's split, so no company
-- appears in two splits across sources. Real questions (FinQA, TAT-QA) go to val / test only, unless
-- var('real_tasks_in_train') is true. A real question whose company is in train is excluded by
-- int_real_tasks (company_in_train_split).
{% set fractions = var('split_fractions') %}
with companies as (
    select distinct source, company from {{ ref('world_tables') }}
),

grouped as (
    select
        c.source,
        c.company,
        case when c.source = 'finqa' and t.company is not null then t.company else c.company end as split_group,
        case when c.source = 'finqa' and t.company is not null then 'sec10k' else c.source end as group_source
    from companies as c
    left join {{ ref('company_tickers') }} as t on c.source = 'finqa' and t.ticker = c.company
),

groups as (
    select distinct
        group_source,
        split_group,
        {{ unit_interval("'" ~ var('split_salt') ~ "' || group_source || ':' || split_group") }} as split_point
    from grouped
),

group_splits as (
    select
        group_source,
        split_group,
        split_point,
        case
            when group_source = 'sec10k' then {{ split_by_fractions('split_point', fractions['sec10k']) }}
            {% if var('real_tasks_in_train') %}
            else {{ split_by_fractions('split_point', fractions['real_in_train']) }}
            {% else %}
            else {{ split_by_fractions('split_point', fractions['real']) }}
            {% endif %}
        end as split
    from groups
)

select g.source, g.company, g.split_group, s.split_point, s.split
from grouped as g
join group_splits as s using (group_source, split_group)
