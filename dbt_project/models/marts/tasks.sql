-- One row per task: synthesised sec10k tasks (single- and multi-table) and real FinQA / TAT-QA questions.
-- The gold spec (gold_tables, gold_operands, gold_expression) says exactly where every number lives and how
-- the answer is computed, so an oracle can solve each task through the environment's real tools.
-- gold_unit (from the question): number | percent (a percentage is asked; gold in percent points, a bare
-- answer may be the percent or the fraction) | ratio (a true ratio or multiple is asked: 5.01 is 5.01, never 501%);
-- gold_scale: '' | thousand | million | billion (the scale a bare number in the gold's table is stated in).
with single_table as (
    select *
    from {{ ref('int_synth_single_table_tasks') }}
    where status = 'ok'
    qualify row_number() over (partition by world_id, table_name, family order by md5(candidate_key))
        <= case when family = 'lookup' then {{ var('lookups_per_table') }} else {{ var('tasks_per_table_per_family') }} end
),

multi_table as (
    select *
    from {{ ref('int_synth_multi_table_tasks') }}
    where status = 'ok'
    qualify row_number() over (partition by world_id, family order by md5(candidate_key))
        <= {{ var('multi_table_per_company_per_family') }}
),

synthesised as (
    select
        'syn_' || left(md5(family || '|' || candidate_key), 16) as task_id,
        'sec10k' as source, 'sec10k.' || family as template_id, 'single_table' as question_type,
        family as analytic_type, world_id, company, question,
        gold_value, gold_unit, gold_scale,
        to_json([table_name]) as gold_tables, operands_json as gold_operands,
        gold_expression, 'template' as gold_program_kind
    from single_table
    union all
    select
        'syn_' || left(md5(family || '|' || candidate_key), 16),
        'sec10k', 'sec10k.' || family, 'multi_table',
        family, world_id, company, question,
        gold_value, gold_unit, gold_scale,
        to_json([table_name, b_table_name]), operands_json,
        gold_expression, 'template'
    from multi_table
),

real as (
    select
        source || ':' || question_id as task_id,
        source, source as template_id, 'single_table' as question_type,
        analytic_type, world_id, company, question,
        gold_value, gold_unit, gold_scale,
        to_json([table_name]) as gold_tables, operands_json as gold_operands,
        gold_expression, gold_program_kind,
        gold_answer_text
    from {{ ref('int_real_tasks') }}
    where status = 'ok'
),

all_tasks as (
    select
        *,
        cast(round(gold_value, 4) as varchar) || case when gold_unit = 'percent' then '%' else '' end as gold_answer_text
    from synthesised
    union all by name
    select * from real
)

select
    t.task_id,
    t.source,
    t.template_id,
    t.question_type,
    t.analytic_type,
    t.world_id,
    t.company,
    s.split_group,
    t.question,
    t.gold_value,
    t.gold_unit,
    t.gold_scale,
    t.gold_answer_text,
    t.gold_tables,
    t.gold_operands,
    t.gold_expression,
    t.gold_program_kind,
    s.split
from all_tasks as t
join {{ ref('int_company_splits') }} as s on s.source = t.source and s.company = t.company
