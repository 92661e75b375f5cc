-- One row per FinQA report page table. World = report (<ticker>_<year>), table = page_<n>.
select
    lower(replace(t.report_id, '/', '_')) as world_id,
    split_part(t.report_id, '/', 1) as ticker,
    t.report_id,
    t.page as table_name,
    'Table on ' || replace(t.page, '_', ' ') || ' of the ' || split_part(t.report_id, '/', 2)
        || ' annual report of ' || split_part(t.report_id, '/', 1) as description,
    t.n_rows - 1 as n_rows,
    t.n_cols,
    t.source_file
from {{ source('raw', 'finqa_tables') }} as t
