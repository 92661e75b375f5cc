-- FinQA cells in long form. Row 0 of every FinQA table is its header: it names the value columns;
-- the row-label column (column 0) is always called `item`.
with cells as (
    -- the original cell text ('$(4,096)') where FinQA kept it, else its normalised text without the
    -- repeated parenthetical FinQA's normalisation appends ('$ -4096 ( 4096 )' -> '$ -4096'), or an empty
    -- one ('( 0.4 ) % (  % )' -> '( 0.4 ) %')
    select lower(replace(report_id, '/', '_')) as world_id, page as table_name, row_index, column_index,
        coalesce(
            cell_text_original,
            regexp_replace(
                regexp_replace(cell_text, '^([^(]*\d[^(]*?)\s+\(\s*[\d.,]+\s*%?\s*\)$', '\1'),
                '\s+\(\s*%?\s*\)$', '')
        ) as cell_text
    from {{ source('raw', 'finqa_cells') }}
),

headers as (
    select
        world_id, table_name, column_index,
        case when column_index = 0 then 'item'
             else coalesce({{ normalize_identifier('cell_text') }}, 'col_' || column_index) end as base_column_name
    from cells
    where row_index = 0
),

named as (
    select
        *,
        case when count(*) over (partition by world_id, table_name, base_column_name) > 1
             then base_column_name || '_' || column_index else base_column_name end as column_name
    from headers
)

select
    c.world_id,
    c.table_name,
    c.row_index - 1 as row_index,
    c.column_index,
    coalesce(n.column_name, 'col_' || c.column_index) as column_name,
    c.cell_text,
    {{ parse_number('c.cell_text') }} as value,
    {{ number_kind('c.cell_text') }} as value_kind
from cells as c
left join named as n using (world_id, table_name, column_index)
where c.row_index > 0
