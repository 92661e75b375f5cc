-- FinQA questions (one per id) with their table reference in world terms.
select
    id as question_id,
    lower(replace(report_id, '/', '_')) as world_id,
    ticker,
    report_id,
    year,
    page as table_name,
    original_split,
    question,
    answer,
    answer_value,
    answer_is_percent,
    exe_ans,
    program,
    program_steps,
    program_value,
    program_ops,
    program_numbers,
    program_result_kind,
    gold_inds,
    -- FinQA marks supporting text sentences as text_<i>: those questions draw on the prose
    coalesce(regexp_matches(gold_inds, '"text_\d+"'), false) as uses_text_evidence,
    source_file
from {{ source('raw', 'finqa_questions') }}
