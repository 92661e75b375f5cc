-- TAT-QA cells in long form. Header rows are the leading rows before the first data row
-- (a row with a label and at least one number that is not a bare year); they name the value columns.
-- The row-label column (column 0) is always called `item`.
with cells as (
    select
        'tatqa_' || left(replace(doc_uid, '-', ''), 8) as world_id,
        'report_table' as table_name,
        row_index,
        column_index,
        cell_text,
        {{ parse_number('cell_text') }} as value,
        {{ number_kind('cell_text') }} as value_kind
    from {{ source('raw', 'tatqa_cells') }}
),

row_flags as (
    select
        world_id,
        row_index,
        max(case when column_index = 0 and trim(coalesce(cell_text, '')) <> '' then 1 else 0 end) as has_label,
        max(case when column_index > 0 and value is not null
                  and not regexp_full_match(trim(cell_text), '(19|20)\d\d') then 1 else 0 end) as has_number
    from cells
    group by all
),

first_data_row as (
    select world_id, coalesce(min(case when has_label = 1 and has_number = 1 then row_index end), 1) as first_row
    from row_flags
    group by all
),

headers as (
    select
        c.world_id,
        c.column_index,
        string_agg(nullif(trim(c.cell_text), ''), ' ' order by c.row_index) as header_text
    from cells as c
    join first_data_row as f using (world_id)
    where c.row_index < f.first_row
    group by all
),

column_names as (
    select distinct
        c.world_id,
        c.column_index,
        case when c.column_index = 0 then 'item'
             else coalesce({{ normalize_identifier('h.header_text') }}, 'col_' || c.column_index) end as base_column_name
    from cells as c
    left join headers as h using (world_id, column_index)
),

named as (
    select
        *,
        case when count(*) over (partition by world_id, base_column_name) > 1
             then base_column_name || '_' || column_index else base_column_name end as column_name
    from column_names
)

select
    c.world_id,
    c.table_name,
    c.row_index - f.first_row as row_index,
    c.column_index,
    n.column_name,
    c.cell_text,
    c.value,
    c.value_kind
from cells as c
join first_data_row as f using (world_id)
join named as n using (world_id, column_index)
where c.row_index >= f.first_row
