-- Candidate multi-table tasks: two values from two DIFFERENT tables of the same company and fiscal year,
-- combined by ratio, difference or share. Each table contributes one anchor fact per year: its first
-- "total ..." row if it has one, else its first row with a currency amount (e.g. '$61,307').
-- The families are declarative specs turned into SQL by the macro synth_families (macros/task_families.sql).
-- Two anchors whose tables state different scales (thousands vs millions) are not comparable
-- (scale_mismatch); a difference is in the scale both tables state, ratios and shares are scale-free.
with amounts as (
    -- a company missing from seeds/company_names.csv is named from its folder ('my_corp' -> 'My Corp')
    select f.*, coalesce(n.display_name, {{ company_display_name('f.company') }}) as display_name
    from {{ ref('int_sec10k_facts') }} as f
    left join {{ ref('company_names') }} as n on n.company = f.company
    where f.status = 'ok' and f.value_kind in ('currency', 'number') and f.is_fiscal_year
),

anchors as (
    select *
    from amounts
    -- an amount worth comparing across tables: a total, or a value reported in currency
    where lower(row_label) like 'total%' or value_kind = 'currency'
    qualify row_number() over (
        partition by world_id, table_name, period_year
        order by (lower(row_label) like 'total%') desc, row_index
    ) = 1
),

ordered as (
    select
        *,
        row_number() over (partition by world_id, period_year order by md5(table_name)) as table_rank
    from anchors
),

pairs as (
    select
        a.*,
        b.table_name as b_table_name, b.description as b_description, b.row_label_column as b_row_label_column,
        b.row_label as b_row_label, b.column_name as b_column_name, b.cell_text as b_cell_text, b.value as b_value,
        b.scale as b_scale
    from ordered as a
    join ordered as b
      on a.world_id = b.world_id and a.period_year = b.period_year
     and b.table_rank in (a.table_rank + 1, a.table_rank + 2)
),

combined as (
    select
        world_id || '|' || table_name || '|' || b_table_name || '|' || period_year as pair_key,
        world_id, company, display_name, period_year, table_name, b_table_name,
        row_label, b_row_label, description, b_description, value, b_value,
        to_json([
            {{ operand_json('p') }},
            json_object('table', b_table_name, 'row_label_column', b_row_label_column, 'row_label', b_row_label,
                        'column', b_column_name, 'cell_text', b_cell_text, 'value', b_value)
        ]) as operands_json,
        case when scale = b_scale then scale else '' end as pair_scale,
        scale <> '' and b_scale <> '' and scale <> b_scale as scale_mismatch
    from pairs as p
),

{% set a = "{company}'s {label} (10-K table on {topic})" %}
{% set b = "{b_label} (10-K table on {b_topic})" %}
{% set families = [
    {
        'name': 'cross_table_ratio', 'source': 'combined', 'columns': ['b_table_name'],
        'key': "pair_key || '|ratio'",
        'expression': "'a0 / a1'", 'value': 'case when b_value <> 0 then value / b_value end',
        'unit': "'ratio'", 'scale': "''",
        'variant_key': "pair_key || 'ratio'",
        'questions': [
            "In fiscal {year}, what was the ratio of " ~ a ~ " to " ~ b ~ "?",
            "Divide " ~ a ~ " by " ~ b ~ ", both for fiscal {year}.",
            "For fiscal {year}, how many times " ~ b ~ " is " ~ a ~ "?",
        ],
        'status': "case when scale_mismatch then 'scale_mismatch' when b_value = 0 then 'zero_denominator' else 'ok' end",
    },
    {
        'name': 'cross_table_difference', 'source': 'combined', 'columns': ['b_table_name'],
        'key': "pair_key || '|difference'",
        'expression': "'a0 - a1'", 'value': 'value - b_value', 'unit': "'number'", 'scale': 'pair_scale',
        'variant_key': "pair_key || 'difference'",
        'questions': [
            "In fiscal {year}, what is the difference between " ~ a ~ " and " ~ b ~ " (first minus second)?",
            "Subtract " ~ b ~ " from " ~ a ~ " for fiscal {year}.",
            "By how much does " ~ a ~ " exceed " ~ b ~ " in fiscal {year}? Give a negative number if it is smaller.",
        ],
        'status': "case when scale_mismatch then 'scale_mismatch' else 'ok' end",
    },
    {
        'name': 'cross_table_share', 'source': 'combined', 'columns': ['b_table_name'],
        'key': "pair_key || '|share'",
        'expression': "'a0 / (a0 + a1) * 100'",
        'value': 'case when value > 0 and b_value > 0 then value / (value + b_value) * 100 end',
        'unit': "'percent'", 'scale': "''",
        'variant_key': "pair_key || 'share'",
        'questions': [
            "In fiscal {year}, what percentage of the combined total of " ~ a ~ " and " ~ b ~ " does the first represent?",
            "Taking " ~ a ~ " and " ~ b ~ " for fiscal {year}, what share (in percent) of their sum is the first?",
            "For fiscal {year}, express " ~ a ~ " as a percent of its sum with " ~ b ~ ".",
        ],
        'status': "case when scale_mismatch then 'scale_mismatch' when value <= 0 or b_value <= 0 then 'non_positive_value' else 'ok' end",
    },
] %}

candidates as (
    {{ synth_families(families) }}
)

select
    * replace (
        case when status = 'ok' and length(question) > {{ var('max_question_chars') }} then 'question_too_long' else status end
            as status
    )
from candidates
