-- Deterministic train / val / test assignment per company (sec10k company, FinQA ticker, TAT-QA document).
-- split_group is the real-world company a split is decided for: a FinQA ticker of one of the 10-K
-- companies (seeds/company_tickers.csv, e.g. AAPL -> apple) shares that company's split, so no company
-- appears in two splits across sources. sec10k companies are md5-ranked 70 / 15 / 15; other real
-- companies go to val / test only, unless var('real_tasks_in_train') is true. A real question whose
-- company is in train is excluded by int_real_tasks (company_in_train_split).
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
    select distinct group_source, split_group from grouped
),

ranked as (
    select
        *,
        row_number() over (partition by group_source order by md5(group_source || ':' || split_group)) as rank_in_source,
        count(*) over (partition by group_source) as n_in_source
    from groups
),

group_splits as (
    select
        group_source,
        split_group,
        case
            when group_source = 'sec10k' then
                case when rank_in_source <= round(n_in_source * 0.7) then 'train'
                     when rank_in_source <= round(n_in_source * 0.85) then 'val'
                     else 'test' end
            {% if var('real_tasks_in_train') %}
            else case when rank_in_source <= round(n_in_source * 0.6) then 'train'
                      when rank_in_source <= round(n_in_source * 0.8) then 'val'
                      else 'test' end
            {% else %}
            else case when rank_in_source % 2 = 0 then 'val' else 'test' end
            {% endif %}
        end as split
    from ranked
)

select g.source, g.company, g.split_group, s.split
from grouped as g
join group_splits as s using (group_source, split_group)
