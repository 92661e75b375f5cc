-- SEC 10-K cells in long form; column 0 is the row label of its row.
with cells as (
    select
        company as world_id,
        table_name,
        row_index,
        column_index,
        coalesce({{ normalize_identifier('column_name') }}, 'col_' || column_index) as base_column_name,
        cell_text
    from {{ source('raw', 'sec10k_cells') }}
),

named as (
    select
        *,
        -- a repeated column name gets its position appended so every column is addressable
        case when count(*) over (partition by world_id, table_name, row_index, base_column_name) > 1
             then base_column_name || '_' || column_index else base_column_name end as column_name
    from cells
)

select
    world_id,
    table_name,
    row_index,
    column_index,
    column_name,
    cell_text,
    {{ parse_number('cell_text') }} as value,
    {{ number_kind('cell_text') }} as value_kind
from named
