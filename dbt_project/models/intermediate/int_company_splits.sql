-- Deterministic train / val / test assignment per company (sec10k company, FinQA ticker, TAT-QA document).
-- A company never appears in two splits. Real (FinQA / TAT-QA) companies go to val / test only,
-- unless var('real_tasks_in_train') is true.
with companies as (
    select distinct source, company from {{ ref('world_tables') }}
),

ranked as (
    select
        *,
        row_number() over (partition by source order by md5(source || ':' || company)) as rank_in_source,
        count(*) over (partition by source) as n_in_source
    from companies
)

select
    source,
    company,
    case
        when source = 'sec10k' then
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
