-- Real FinQA and TAT-QA questions with a status: 'ok' when the gold answer is an arithmetic result
-- whose numbers all come from the question's table, otherwise the reason it is excluded.
--
-- gold_unit (number | percent | ratio) comes from the question (vars in dbt_project.yml, regular
-- expressions on the lower-cased question), in this order:
-- 1. it asks for a percentage (percent_question_words: "what percent(age)", "%", "growth rate", "roi", ...;
--    a percent word that only describes something, "the 3.95% notes", "a one-percentage-point increase",
--    does not count: percent_descriptor_pattern) -> `percent`;
-- 2. it names a ratio or multiple (ratio_question_words: "the ratio of A to B", "how many times") -> `ratio`;
-- 3. FinQA: a program whose value is a fraction (program_result_kind, rl_assets.programs, or FinQA's answer
--    is that fraction as a percentage) asked as a rate, share, margin, growth or change
--    (fraction_percent_words), or answered as a percentage, and a program already in percent points ->
--    `percent`; TAT-QA: scale `percent`, or a division asked as a part of a whole (share_question_words)
--    -> `percent`;
-- 4. anything else -> `number`.
-- A `percent` gold is in percent points: a FinQA fraction becomes the program times 100 (the program gets a
-- final `multiply(#n, const_100)` step), a TAT-QA fraction the derivation times 100 (`(derivation) * 100`).
-- A `ratio` gold is the value as computed (a FinQA program already in percent points is divided by 100).
-- gold_scale ('' | thousand | million | billion): FinQA `number` golds take the scale the question states
-- ("in millions": question_scale_pattern), other FinQA golds none; TAT-QA its own scale (ratio and percent
-- golds ignore it).
{% set percent_words = var('percent_question_words') | join('|') %}
{% set ratio_words = var('ratio_question_words') | join('|') %}
{% set fraction_words = var('fraction_percent_words') | join('|') %}
{% set share_words = var('share_question_words') | join('|') %}
{% set descriptor = var('percent_descriptor_pattern') %}
with operands as (
    select
        source, question_id,
        count(*) filter (where matched) as n_matched,
        count(*) filter (where not matched and not is_constant) as n_unmatched,
        to_json(list(operand_json order by token) filter (where matched)) as operands_json
    from {{ ref('int_real_task_operands') }}
    group by all
),

finqa_units as (
    select
        q.*,
        lower(q.question) as question_lc,
        regexp_matches(regexp_replace(lower(q.question), '{{ descriptor }}', ' ', 'g'), '{{ percent_words }}') as asks_percent,
        regexp_matches(lower(q.question), '{{ ratio_words }}') as asks_ratio,
        -- what the program's value is: a fraction (0.938 for 93.8%), percent points, or an amount
        case
            when q.answer_is_percent and abs(q.program_value * 100 - q.answer_value) <= greatest(0.01 * abs(q.answer_value), 0.006)
                then 'fraction'
            when q.answer_is_percent and abs(q.program_value - q.answer_value) <= greatest(0.01 * abs(q.answer_value), 0.006)
                then 'points'
            when q.program_result_kind = 'percent' then 'points'
            when q.program_result_kind = 'fraction' then 'fraction'
            else 'amount'
        end as value_kind
    from {{ ref('stg_finqa__questions') }} as q
),

finqa_unit as (
    select
        *,
        case
            when asks_percent then 'percent'
            when asks_ratio then 'ratio'
            when value_kind = 'points' then 'percent'
            when value_kind = 'fraction' and (answer_is_percent or regexp_matches(question_lc, '{{ fraction_words }}'))
                then 'percent'
            else 'number'
        end as unit
    from finqa_units
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
        case when q.unit = 'percent' and q.value_kind = 'fraction'
             then q.program || ', multiply(#' || (json_array_length(q.program_steps) - 1) || ', const_100)'
             else q.program end as gold_expression,
        'finqa_program' as gold_program_kind,
        case
            when q.unit = 'percent' and q.value_kind = 'fraction' then q.program_value * 100
            when q.unit = 'ratio' and q.value_kind = 'points' then q.program_value / 100
            else q.program_value
        end as gold_value,
        q.unit as gold_unit,
        case when q.unit = 'number'
             then coalesce(regexp_extract(q.question_lc, '{{ var("question_scale_pattern") }}', 3), '')
             else '' end as gold_scale,
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
    from finqa_unit as q
    left join operands as o on o.source = 'finqa' and o.question_id = q.question_id
),

tatqa_base as (
    select
        q.*,
        o.operands_json, o.n_matched, o.n_unmatched,
        greatest(0.01 * abs(q.answer_value), 0.006) as tolerance,
        regexp_matches(regexp_replace(lower(q.question), '{{ descriptor }}', ' ', 'g'), '{{ percent_words }}') as asks_percent,
        regexp_matches(lower(q.question), '{{ ratio_words }}') as asks_ratio,
        regexp_matches(lower(q.question), '{{ share_words }}') and q.derivation like '%/%' as asks_share
    from {{ ref('stg_tatqa__questions') }} as q
    left join operands as o on o.source = 'tatqa' and o.question_id = q.question_id
),

tatqa_unit as (
    select
        *,
        case
            when asks_percent then 'percent'
            when asks_ratio then 'ratio'
            when scale = 'percent' or asks_share then 'percent'
            else 'number'
        end as unit
    from tatqa_base
),

tatqa_gold as (
    select
        *,
        -- a percent gold is in percent points: the derivation times 100 when the answer is in points, or when
        -- the scale is not `percent` (then the answer, like the derivation, is the fraction)
        unit = 'percent' and (coalesce(scale, '') <> 'percent' or coalesce(abs(derivation_value * 100 - answer_value) <= tolerance, false))
            as times_100
    from tatqa_unit
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
        case when times_100 then '(' || derivation || ') * 100' else derivation end as gold_expression,
        'tatqa_derivation' as gold_program_kind,
        case when times_100 then derivation_value * 100 else derivation_value end as gold_value,
        unit as gold_unit,
        -- the scale the derivation's numbers are in (a ratio or percent gold ignores it; the oracle reads
        -- '60.3 million' in it by this scale)
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
    from tatqa_gold
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
        -- the gold is the stated answer, as is or as a percentage / fraction of it (to 1% or 0.006 of the answer)
        when abs(gold_value - reference_value) > greatest(0.01 * abs(reference_value), 0.006)
             and abs(gold_value / 100 - reference_value) > greatest(0.01 * abs(reference_value), 0.006)
             and abs(gold_value * 100 - reference_value) > greatest(0.01 * abs(reference_value), 0.006)
            then 'answer_program_mismatch'
        else 'ok'
    end as status
from (select * from finqa union all by name select * from tatqa) as r
left join {{ ref('int_company_splits') }} as sp on sp.source = r.source and sp.company = r.company
