-- One row per TAT-QA document table. World = document (tatqa_<first 8 chars of uid>), one table per world.
with first_paragraph as (
    select doc_uid, text
    from {{ source('raw', 'tatqa_paragraphs') }}
    qualify row_number() over (partition by doc_uid order by paragraph_order) = 1
)

select
    'tatqa_' || left(replace(t.doc_uid, '-', ''), 8) as world_id,
    t.doc_uid,
    'report_table' as table_name,
    coalesce(left(p.text, 200), 'Table from an annual report') as description,
    t.n_rows,
    t.n_cols,
    t.source_file
from {{ source('raw', 'tatqa_tables') }} as t
left join first_paragraph as p using (doc_uid)
