-- Every candidate single-table task synthesised from the sec10k facts, with exact gold answers.
-- status = 'ok' for usable candidates; any other status is a reason for exclusion (task_exclusions).
-- Families: lookup, abs_change, pct_change, ratio, share_of_total, cagr, average, each a declarative spec
-- below turned into SQL by the macro synth_families (macros/task_families.sql).
-- Arithmetic families use only currency / plain-number cells (never percentages, years or multiples).
-- gold_scale: amounts (lookup, abs_change, average) are in the scale their table states (int_sec10k_facts);
-- percentages and ratios (pct_change, ratio, share_of_total, cagr) are scale-free ('').
with facts as (
    -- a company missing from seeds/company_names.csv is named from its folder ('my_corp' -> 'My Corp')
    select f.*, coalesce(n.display_name, {{ company_display_name('f.company') }}) as display_name
    from {{ ref('int_sec10k_facts') }} as f
    left join {{ ref('company_names') }} as n on n.company = f.company
),

ok_facts as (
    select *, to_json([{{ operand_json('facts') }}]) as operands_json from facts where status = 'ok'
),

amounts as (
    select * from ok_facts where value_kind in ('currency', 'number')
),

periods as (
    select
        a.*,
        lag(a.period_year) over w as prev_year,
        lag(a.row_label) over w as prev_row_label,
        lag(a.column_name) over w as prev_column_name,
        lag(a.cell_text) over w as prev_cell_text,
        lag(a.value) over w as prev_value,
        lag(a.scale) over w as prev_scale,
        lag(a.period_phrase) over w as prev_period_phrase
    from amounts as a
    window w as (partition by world_id, table_name, row_index order by period_year)
),

pairs as (
    select
        * replace (
            -- [earlier value, later value]
            to_json([
                json_object('table', table_name, 'row_label_column', row_label_column, 'row_label', row_label,
                            'column', prev_column_name, 'cell_text', prev_cell_text, 'value', prev_value),
                {{ operand_json('periods') }}
            ]) as operands_json
        ),
        case when prev_scale = scale then scale else '' end as pair_scale
    from periods
    where prev_year is not null and prev_year < period_year
),

row_pairs as (
    select
        a.* replace (
            -- [row a, row b], same table and column
            to_json([{{ operand_json('a') }}, {{ operand_json('b') }}]) as operands_json
        ),
        b.row_index as b_row_index, b.row_label as b_row_label, b.cell_text as b_cell_text, b.value as b_value,
        b.column_name as b_column_name
    from amounts as a
    join amounts as b
      on a.world_id = b.world_id and a.table_name = b.table_name and a.column_index = b.column_index
     and a.row_index <> b.row_index
),

series as (
    select
        world_id, company, display_name, table_name, description, row_index, row_label,
        min(period_year) as first_year,
        max(period_year) as last_year,
        count(*) as n_years,
        to_json(list({{ operand_json('a') }} order by period_year)) as all_operands_json,
        arg_min(value, period_year) as first_value,
        arg_max(value, period_year) as last_value,
        -- ordered: a parallel avg() adds in any order, and the float result (so the snapshot hash) varies
        avg(value order by period_year) as mean_value,
        case when count(distinct scale) = 1 then any_value(scale) else '' end as series_scale
    from amounts as a
    where is_fiscal_year
    group by all
),

{% set families = [
    {
        'name': 'lookup', 'source': 'ok_facts',
        'key': "world_id || '|' || table_name || '|' || row_index || '|' || column_index",
        'expression': "'a0'", 'value': 'value',
        'unit': "case when value_kind = 'percent' then 'percent' else 'number' end",
        'scale': 'scale',
        'variant_key': 'world_id || table_name || row_index || column_index',
        'questions': [
            "What was {label} for {company} {period}? It is reported in the table on {topic}.",
            "According to {company}'s 10-K table on {topic}, what is the value of {label} {period}?",
            "Look up {company}'s {label} {period} (10-K table: {topic}).",
        ],
    },
    {
        'name': 'abs_change', 'source': 'pairs',
        'key': "world_id || '|' || table_name || '|' || row_index || '|' || prev_year || '-' || period_year",
        'expression': "'a1 - a0'", 'value': 'value - prev_value', 'unit': "'number'", 'scale': 'pair_scale',
        'variant_key': "world_id || table_name || row_index || period_year || 'abs'",
        'questions': [
            "By how much did {company}'s {label} change from {prev_year} to {year}? Use the 10-K table on {topic}.",
            "What was the absolute change in {label} for {company} between {prev_year} and {year} (table: {topic})?",
            "Compute {company}'s {year} {label} minus its {prev_year} value, from the 10-K table on {topic}.",
        ],
    },
    {
        'name': 'pct_change', 'source': 'pairs',
        'key': "world_id || '|' || table_name || '|' || row_index || '|' || prev_year || '-' || period_year",
        'expression': "'(a1 - a0) / a0 * 100'",
        'value': 'case when prev_value > 0 then (value - prev_value) / prev_value * 100 end',
        'unit': "'percent'", 'scale': "''",
        'variant_key': "world_id || table_name || row_index || period_year || 'pct'",
        'questions': [
            "What was the percentage change in {company}'s {label} from {prev_year} to {year}? See the 10-K table on {topic}.",
            "By what percent did {label} grow year over year for {company} in {year} versus {prev_year} (table: {topic})?",
            "Calculate the {prev_year}-to-{year} growth rate, in percent, of {company}'s {label} using the 10-K table on {topic}.",
        ],
        'status': "case when prev_value = 0 then 'zero_denominator' when prev_value < 0 then 'negative_base' else 'ok' end",
    },
    {
        'name': 'ratio', 'source': 'row_pairs',
        'key': "world_id || '|' || table_name || '|' || row_index || '/' || b_row_index || '|' || column_index",
        'expression': "'a0 / a1'", 'value': 'case when b_value <> 0 then value / b_value end',
        'unit': "'ratio'", 'scale': "''",
        'variant_key': "world_id || table_name || row_index || '/' || b_row_index || column_index",
        'questions': [
            "What is the ratio of {label} to {b_label} for {company} {period}? Both are in the 10-K table on {topic}.",
            "Divide {company}'s {label} by its {b_label} {period} (10-K table: {topic}). What is the result?",
            "How many times {b_label} is {company}'s {label} {period}, according to the 10-K table on {topic}?",
        ],
        'status': "case when b_value = 0 then 'zero_denominator' else 'ok' end",
    },
    {
        'name': 'share_of_total', 'source': 'row_pairs',
        'key': "world_id || '|' || table_name || '|' || row_index || '/' || b_row_index || '|' || column_index",
        'expression': "'a0 / a1 * 100'", 'value': 'case when b_value > 0 then value / b_value * 100 end',
        'unit': "'percent'", 'scale': "''",
        'variant_key': "world_id || table_name || row_index || '/' || b_row_index || column_index || 'share'",
        'questions': [
            "What percentage of {company}'s {b_label} did {label} account for {period}? Use the 10-K table on {topic}.",
            "What share of the {b_label}, in percent, is {label} for {company} {period} (table: {topic})?",
            "Express {company}'s {label} as a percent of {b_label} {period}, from the 10-K table on {topic}.",
        ],
        'status': "case when b_value = 0 then 'zero_denominator' when b_value < 0 or value < 0 then 'negative_total_or_part'
                        when value > b_value then 'part_exceeds_total' else 'ok' end",
        'where': "lower(b_row_label) like 'total%' and lower(row_label) not like 'total%'",
    },
    {
        'name': 'cagr', 'source': 'series',
        'key': "world_id || '|' || table_name || '|' || row_index || '|' || first_year || '-' || last_year",
        'operands': "to_json([json_extract(all_operands_json, '$[0]'), json_extract(all_operands_json, '$[' || (n_years - 1) || ']')])",
        'expression': "'((a1 / a0) ** (1 / ' || (last_year - first_year) || ') - 1) * 100'",
        'value': 'case when first_value > 0 and last_value > 0 then (power(last_value / first_value, 1.0 / (last_year - first_year)) - 1) * 100 end',
        'unit': "'percent'", 'scale': "''",
        'variant_key': "world_id || table_name || row_index || 'cagr'",
        'questions': [
            "What was the compound annual growth rate (CAGR) of {company}'s {label} from {first_year} to {last_year}? Use the 10-K table on {topic}.",
            "Compute the CAGR, in percent, of {label} for {company} between {first_year} and {last_year} (table: {topic}).",
            "At what compound annual rate did {company}'s {label} grow from {first_year} to {last_year}, per the 10-K table on {topic}?",
        ],
        'status': "case when first_value <= 0 or last_value <= 0 then 'non_positive_value' else 'ok' end",
        'where': 'n_years >= 3 and n_years = last_year - first_year + 1',
    },
    {
        'name': 'average', 'source': 'series',
        'key': "world_id || '|' || table_name || '|' || row_index || '|avg'",
        'operands': 'all_operands_json',
        'expression': "'(' || array_to_string(list_transform(range(n_years), lambda i: 'a' || i), ' + ') || ') / ' || n_years",
        'value': 'mean_value', 'unit': "'number'", 'scale': 'series_scale',
        'variant_key': "world_id || table_name || row_index || 'avg'",
        'questions': [
            "What was the average {label} for {company} over {first_year}-{last_year}? Use the 10-K table on {topic}.",
            "Average {company}'s {label} across fiscal years {first_year} to {last_year} (table: {topic}).",
            "What is the mean yearly {label} of {company} from {first_year} through {last_year}, per the 10-K table on {topic}?",
        ],
        'where': 'n_years >= 2 and n_years = last_year - first_year + 1',
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
