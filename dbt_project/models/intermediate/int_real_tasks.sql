-- Real FinQA and TAT-QA questions with a status: 'ok' when the gold answer is an arithmetic result
-- whose numbers all come from the question's table, otherwise the reason it is excluded.
--
-- gold_unit (number | percent | ratio) and gold_scale ('' | thousand | million | billion):
-- FinQA: a percentage answer ('93.8%') is a `ratio` when the program's value is that percentage as a
-- fraction (0.938) and a `percent` when it is the percentage itself; otherwise the program decides
-- (program_result_kind, rl_assets.programs): a fraction times 100 is a `percent`; a fraction is a
-- `ratio` when the question asks for one (var ratio_question_words: "what percentage ...", "ratio",
-- "change", ...); a difference of percentages asked "in percentage points" is a `percent`; anything
-- else a `number`. FinQA answers carry no scale (''). TAT-QA: scale `percent` gives a `percent` gold (the
-- derivation times 100 when that is the stated answer); scale thousand / million / billion is the gold_scale.
{% set ratio_words = var('ratio_question_words') %}
with operands as (
    select
        source, question_id,
        count(*) filter (where matched) as n_matched,
        count(*) filter (where not matched and not is_constant) as n_unmatched,
        to_json(list(operand_json order by token) filter (where matched)) as operands_json
    from {{ ref('int_real_task_operands') }}
    group by all
),

finqa as (
    select
        'finqa' as source,
        q.question_id,
        q.world_id,
        q.ticker as company,
        q.table_name,
        q.question,
        q.answer as gold_answer_text,
        q.program as gold_expression,
        'finqa_program' as gold_program_kind,
        q.program_value as gold_value,
        case
            when q.answer_is_percent and abs(q.program_value * 100 - q.answer_value) <= greatest(0.01 * abs(q.answer_value), 0.006)
                then 'ratio'
            when q.answer_is_percent and abs(q.program_value - q.answer_value) <= greatest(0.01 * abs(q.answer_value), 0.006)
                then 'percent'
            when q.program_result_kind = 'percent' then 'percent'
            when q.program_result_kind = 'fraction'
                 and regexp_matches(lower(q.question), '{{ ratio_words | join("|") }}') then 'ratio'
            when q.program_result_kind = 'amount'
                 and regexp_matches(lower(q.question), '(in|how many|by) percentage points?|percentage points? (change|difference|variation)')
                then 'percent'
            else 'number'
        end as gold_unit,
        '' as gold_scale,
        o.operands_json,
        case
            when q.program_ops like '%subtract%' and q.program_ops like '%divide%' then 'pct_change'
            when q.program_ops = 'subtract' then 'abs_change'
            when q.program_ops = 'divide' then 'ratio'
            when q.program_ops = 'add' then 'sum'
            when q.program_ops like '%add%' and q.program_ops like '%divide%' then 'average'
            else 'multi_step'
        end as analytic_type,
        coalesce(q.exe_ans, q.answer_value / case when q.answer_is_percent then 100 else 1 end) as reference_value,
        -- the answer as written must be the program's value (as is, or as a percentage / fraction of it), to
        -- the answer's own precision ('5.3' for 5.2825) or 1%: FinQA has programs that compute something else
        q.answer_value is null or q.program_value is null or least(abs(q.program_value - q.answer_value), abs(q.program_value * 100 - q.answer_value),
                   abs(q.program_value / 100 - q.answer_value))
           <= greatest(0.01 * abs(q.answer_value),
                       0.50001 * power(10, -length(coalesce(regexp_extract(q.answer, '\d\.(\d+)', 1), ''))))
            as answer_matches_program,
        case
            when q.program_ops like '%greater%' then 'boolean_answer'
            when q.program_ops like '%table_%' then 'table_aggregate_op'
            when q.program_value is null then 'program_not_executable'
            when coalesce(o.n_unmatched, 0) > 0 and q.uses_text_evidence then 'number_from_text'
            when coalesce(o.n_unmatched, 0) > 0 then 'number_not_in_table'
            when coalesce(o.n_matched, 0) = 0 then 'no_table_numbers'
            else 'ok'
        end as base_status
    from {{ ref('stg_finqa__questions') }} as q
    left join operands as o on o.source = 'finqa' and o.question_id = q.question_id
),

tatqa_base as (
    select
        q.*,
        o.operands_json, o.n_matched, o.n_unmatched,
        greatest(0.01 * abs(q.answer_value), 0.006) as tolerance
    from {{ ref('stg_tatqa__questions') }} as q
    left join operands as o on o.source = 'tatqa' and o.question_id = q.question_id
),

tatqa as (
    select
        'tatqa' as source,
        question_id,
        world_id,
        doc_uid as company,
        table_name,
        question,
        answer_text as gold_answer_text,
        case when scale = 'percent' and abs(derivation_value * 100 - answer_value) <= tolerance
             then '(' || derivation || ') * 100' else derivation end as gold_expression,
        'tatqa_derivation' as gold_program_kind,
        case when scale = 'percent' and abs(derivation_value * 100 - answer_value) <= tolerance
             then derivation_value * 100 else derivation_value end as gold_value,
        case when scale = 'percent' then 'percent' else 'number' end as gold_unit,
        case when scale in ('thousand', 'million', 'billion') then scale else '' end as gold_scale,
        operands_json,
        case
            when regexp_matches(lower(question), 'percentage change|percent change|% change|growth rate') then 'pct_change'
            when regexp_matches(lower(question), 'average') then 'average'
            when regexp_matches(lower(question), 'ratio|proportion|percentage of|as a percentage') then 'ratio'
            when regexp_matches(lower(question), 'change|difference|increase|decrease') then 'abs_change'
            when regexp_matches(lower(question), 'total|sum|combined') then 'sum'
            else 'multi_step'
        end as analytic_type,
        answer_value as reference_value,
        true as answer_matches_program,
        case
            when answer_type in ('span', 'multi-span') then 'span_answer'
            when answer_type = 'count' then 'count_answer'
            when answer_type <> 'arithmetic' then 'non_arithmetic_answer'
            when answer_from = 'text' then 'number_from_text'
            when derivation_value is null then 'program_not_executable'
            when coalesce(n_unmatched, 0) > 0 then 'number_from_text'
            when coalesce(n_matched, 0) = 0 then 'no_table_numbers'
            else 'ok'
        end as base_status
    from tatqa_base
)

select
    r.*,
    case
        when base_status <> 'ok' then base_status
        {% if not var('real_tasks_in_train') %}
        -- the same real company is a training company through its 10-K tables
        when sp.split = 'train' then 'company_in_train_split'
        {% endif %}
        when gold_value is null or isnan(gold_value) or isinf(gold_value) then 'non_finite_answer'
        when reference_value is null then 'non_numeric_answer'
        when not answer_matches_program then 'answer_program_mismatch'
        when abs(gold_value - reference_value) > greatest(0.01 * abs(reference_value), 0.006)
             and abs(gold_value - reference_value * 100) > greatest(0.01 * abs(reference_value * 100), 0.006)
             and abs(gold_value * 100 - reference_value) > greatest(0.01 * abs(reference_value), 0.006)
            then 'answer_program_mismatch'
        else 'ok'
    end as status
from (select * from finqa union all by name select * from tatqa) as r
left join {{ ref('int_company_splits') }} as sp on sp.source = r.source and sp.company = r.company
