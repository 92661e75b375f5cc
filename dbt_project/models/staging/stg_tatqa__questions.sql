-- TAT-QA questions with their document's world.
select
    q.uid as question_id,
    'tatqa_' || left(replace(q.doc_uid, '-', ''), 8) as world_id,
    q.doc_uid,
    'report_table' as table_name,
    q.question_order,
    q.question,
    q.answer_text,
    q.answer_value,
    q.answer_type,
    q.answer_from,
    q.derivation,
    q.derivation_value,
    q.program_numbers,
    nullif(q.scale, '') as scale,
    q.source_file
from {{ source('raw', 'tatqa_questions') }} as q
