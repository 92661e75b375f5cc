-- Every cell of every world table in long form, with its row label (the text in column 0 of its row)
-- and its parsed numeric value (macro parse_number) and kind (currency / percent / years / multiple / number).
with cells as (
    select 'sec10k' as source, * from {{ ref('stg_sec10k__cells') }}
    union all by name
    select 'finqa' as source, * from {{ ref('stg_finqa__cells') }}
    union all by name
    select 'tatqa' as source, * from {{ ref('stg_tatqa__cells') }}
),

labels as (
    select world_id, table_name, row_index, trim(coalesce(cell_text, '')) as row_label
    from cells
    where column_index = 0
)

select
    c.world_id,
    c.source,
    c.table_name,
    c.row_index,
    c.column_index,
    c.column_name,
    l.row_label,
    trim(c.cell_text) as cell_text,
    c.value,
    c.value_kind
from cells as c
left join labels as l using (world_id, table_name, row_index)
