-- The environment's world: every table an agent can list, inspect and query, by world (company_name in the tools).
-- sec10k: world = company; FinQA: world = one annual report (<ticker>_<year>); TAT-QA: world = one document.
with tables as (
    select world_id, 'sec10k' as source, company, table_name, description, source_file from {{ ref('stg_sec10k__tables') }}
    union all
    select world_id, 'finqa', ticker, table_name, description, source_file from {{ ref('stg_finqa__tables') }}
    union all
    select world_id, 'tatqa', doc_uid, table_name, description, source_file from {{ ref('stg_tatqa__tables') }}
),

shape as (
    select
        world_id,
        table_name,
        count(distinct row_index) as n_rows,
        count(distinct column_index) as n_cols,
        max(case when column_index = 0 then column_name end) as row_label_column
    from {{ ref('world_cells') }}
    group by all
),

columns as (
    select world_id, table_name, to_json(list(column_name order by column_index)) as columns_json
    from (select distinct world_id, table_name, column_index, column_name from {{ ref('world_cells') }})
    group by all
)

select
    t.world_id,
    t.source,
    t.company,
    t.table_name,
    t.description,
    s.n_rows,
    s.n_cols,
    s.row_label_column,
    c.columns_json,
    t.source_file
from tables as t
join shape as s using (world_id, table_name)
join columns as c using (world_id, table_name)
