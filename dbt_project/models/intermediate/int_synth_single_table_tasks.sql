-- Every candidate single-table task synthesised from the sec10k facts, with exact gold answers.
-- status = 'ok' for usable candidates; any other status is a reason for exclusion (task_exclusions).
-- Families: lookup, abs_change, pct_change, ratio, share_of_total, cagr, average.
-- Arithmetic families use only currency / plain-number cells (never percentages, years or multiples).
with facts as (
    -- a company missing from seeds/company_names.csv is named from its folder ('my_corp' -> 'My Corp')
    select f.*, coalesce(n.display_name, {{ company_display_name('f.company') }}) as display_name
    from {{ ref('int_sec10k_facts') }} as f
    left join {{ ref('company_names') }} as n on n.company = f.company
),

ok_facts as (
    select * from facts where status = 'ok'
),

amounts as (
    select * from ok_facts where value_kind in ('currency', 'number')
),

lookup as (
    select
        world_id || '|' || table_name || '|' || row_index || '|' || column_index as candidate_key,
        'lookup' as family,
        world_id, company, table_name,
        to_json([{{ operand_json('f') }}]) as operands_json,
        'a0' as gold_expression,
        value as gold_value,
        case when value_kind = 'percent' then 'percent' else 'number' end as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || column_index", [
            "'What was ' || " ~ label_phrase('row_label') ~ " || ' for ' || display_name || ' ' || period_phrase || '? It is reported in the table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'According to ' || display_name || '''s 10-K table on ' || " ~ topic_phrase('description') ~ " || ', what is the value of ' || " ~ label_phrase('row_label') ~ " || ' ' || period_phrase || '?'",
            "'Look up ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' ' || period_phrase || ' (10-K table: ' || " ~ topic_phrase('description') ~ " || ').'"
        ]) }} as question,
        'ok' as status
    from ok_facts as f
),

periods as (
    select
        a.*,
        lag(a.period_year) over w as prev_year,
        lag(a.row_label) over w as prev_row_label,
        lag(a.column_name) over w as prev_column_name,
        lag(a.cell_text) over w as prev_cell_text,
        lag(a.value) over w as prev_value,
        lag(a.period_phrase) over w as prev_period_phrase
    from amounts as a
    window w as (partition by world_id, table_name, row_index order by period_year)
),

pairs as (
    select
        p.*,
        -- [earlier value, later value]
        to_json([
            json_object('table', table_name, 'row_label_column', row_label_column, 'row_label', row_label,
                        'column', prev_column_name, 'cell_text', prev_cell_text, 'value', prev_value),
            {{ operand_json('p') }}
        ]) as operands_json
    from periods as p
    where prev_year is not null and prev_year < period_year
),

abs_change as (
    select
        world_id || '|' || table_name || '|' || row_index || '|' || prev_year || '-' || period_year as candidate_key,
        'abs_change' as family,
        world_id, company, table_name,
        operands_json,
        'a1 - a0' as gold_expression,
        value - prev_value as gold_value,
        'number' as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || period_year || 'abs'", [
            "'By how much did ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' change from ' || prev_year || ' to ' || period_year || '? Use the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'What was the absolute change in ' || " ~ label_phrase('row_label') ~ " || ' for ' || display_name || ' between ' || prev_year || ' and ' || period_year || ' (table: ' || " ~ topic_phrase('description') ~ " || ')?'",
            "'Compute ' || display_name || '''s ' || period_year || ' ' || " ~ label_phrase('row_label') ~ " || ' minus its ' || prev_year || ' value, from the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'"
        ]) }} as question,
        'ok' as status
    from pairs as p
),

pct_change as (
    select
        world_id || '|' || table_name || '|' || row_index || '|' || prev_year || '-' || period_year as candidate_key,
        'pct_change' as family,
        world_id, company, table_name,
        operands_json,
        '(a1 - a0) / a0 * 100' as gold_expression,
        case when prev_value > 0 then (value - prev_value) / prev_value * 100 end as gold_value,
        'percent' as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || period_year || 'pct'", [
            "'What was the percentage change in ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' from ' || prev_year || ' to ' || period_year || '? See the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'By what percent did ' || " ~ label_phrase('row_label') ~ " || ' grow year over year for ' || display_name || ' in ' || period_year || ' versus ' || prev_year || ' (table: ' || " ~ topic_phrase('description') ~ " || ')?'",
            "'Calculate the ' || prev_year || '-to-' || period_year || ' growth rate, in percent, of ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' using the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'"
        ]) }} as question,
        case when prev_value = 0 then 'zero_denominator'
             when prev_value < 0 then 'negative_base'
             else 'ok' end as status
    from pairs as p
),

row_pairs as (
    select
        a.*,
        b.row_index as b_row_index, b.row_label as b_row_label, b.cell_text as b_cell_text, b.value as b_value,
        b.column_name as b_column_name,
        -- [row a, row b], same table and column
        to_json([
            {{ operand_json('a') }},
            {{ operand_json('b') }}
        ]) as operands_json
    from amounts as a
    join amounts as b
      on a.world_id = b.world_id and a.table_name = b.table_name and a.column_index = b.column_index
     and a.row_index <> b.row_index
),

ratio as (
    select
        world_id || '|' || table_name || '|' || row_index || '/' || b_row_index || '|' || column_index as candidate_key,
        'ratio' as family,
        world_id, company, table_name,
        operands_json,
        'a0 / a1' as gold_expression,
        case when b_value <> 0 then value / b_value end as gold_value,
        'ratio' as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || '/' || b_row_index || column_index", [
            "'What is the ratio of ' || " ~ label_phrase('row_label') ~ " || ' to ' || " ~ label_phrase('b_row_label') ~ " || ' for ' || display_name || ' ' || period_phrase || '? Both are in the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'Divide ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' by its ' || " ~ label_phrase('b_row_label') ~ " || ' ' || period_phrase || ' (10-K table: ' || " ~ topic_phrase('description') ~ " || '). What is the result?'",
            "'How many times ' || " ~ label_phrase('b_row_label') ~ " || ' is ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' ' || period_phrase || ', according to the 10-K table on ' || " ~ topic_phrase('description') ~ " || '?'"
        ]) }} as question,
        case when b_value = 0 then 'zero_denominator' else 'ok' end as status
    from row_pairs as r
),

share_of_total as (
    select
        world_id || '|' || table_name || '|' || row_index || '/' || b_row_index || '|' || column_index as candidate_key,
        'share_of_total' as family,
        world_id, company, table_name,
        operands_json,
        'a0 / a1 * 100' as gold_expression,
        case when b_value > 0 then value / b_value * 100 end as gold_value,
        'percent' as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || '/' || b_row_index || column_index || 'share'", [
            "'What percentage of ' || display_name || '''s ' || " ~ label_phrase('b_row_label') ~ " || ' did ' || " ~ label_phrase('row_label') ~ " || ' account for ' || period_phrase || '? Use the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'What share of the ' || " ~ label_phrase('b_row_label') ~ " || ', in percent, is ' || " ~ label_phrase('row_label') ~ " || ' for ' || display_name || ' ' || period_phrase || ' (table: ' || " ~ topic_phrase('description') ~ " || ')?'",
            "'Express ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' as a percent of ' || " ~ label_phrase('b_row_label') ~ " || ' ' || period_phrase || ', from the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'"
        ]) }} as question,
        case when b_value = 0 then 'zero_denominator'
             when b_value < 0 or value < 0 then 'negative_total_or_part'
             when value > b_value then 'part_exceeds_total'
             else 'ok' end as status
    from row_pairs as r
    where lower(b_row_label) like 'total%' and lower(row_label) not like 'total%'
),

series as (
    select
        world_id, company, display_name, table_name, description, row_index, row_label,
        min(period_year) as first_year,
        max(period_year) as last_year,
        count(*) as n_years,
        to_json(list({{ operand_json('a') }} order by period_year)) as operands_json,
        arg_min(value, period_year) as first_value,
        arg_max(value, period_year) as last_value,
        -- ordered: a parallel avg() adds in any order, and the float result (so the snapshot hash) varies
        avg(value order by period_year) as mean_value
    from amounts as a
    where is_fiscal_year
    group by all
),

cagr as (
    select
        world_id || '|' || table_name || '|' || row_index || '|' || first_year || '-' || last_year as candidate_key,
        'cagr' as family,
        world_id, company, table_name,
        to_json([json_extract(operands_json, '$[0]'), json_extract(operands_json, '$[' || (n_years - 1) || ']')]) as operands_json,
        '((a1 / a0) ** (1 / ' || (last_year - first_year) || ') - 1) * 100' as gold_expression,
        case when first_value > 0 and last_value > 0
             then (power(last_value / first_value, 1.0 / (last_year - first_year)) - 1) * 100 end as gold_value,
        'percent' as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || 'cagr'", [
            "'What was the compound annual growth rate (CAGR) of ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' from ' || first_year || ' to ' || last_year || '? Use the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'Compute the CAGR, in percent, of ' || " ~ label_phrase('row_label') ~ " || ' for ' || display_name || ' between ' || first_year || ' and ' || last_year || ' (table: ' || " ~ topic_phrase('description') ~ " || ').'",
            "'At what compound annual rate did ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' grow from ' || first_year || ' to ' || last_year || ', per the 10-K table on ' || " ~ topic_phrase('description') ~ " || '?'"
        ]) }} as question,
        case when first_value <= 0 or last_value <= 0 then 'non_positive_value' else 'ok' end as status
    from series
    where n_years >= 3 and n_years = last_year - first_year + 1
),

average as (
    select
        world_id || '|' || table_name || '|' || row_index || '|avg' as candidate_key,
        'average' as family,
        world_id, company, table_name,
        operands_json,
        '(' || array_to_string(list_transform(range(n_years), lambda i: 'a' || i), ' + ') || ') / ' || n_years as gold_expression,
        mean_value as gold_value,
        'number' as gold_unit,
        {{ pick_variant("world_id || table_name || row_index || 'avg'", [
            "'What was the average ' || " ~ label_phrase('row_label') ~ " || ' for ' || display_name || ' over ' || first_year || '-' || last_year || '? Use the 10-K table on ' || " ~ topic_phrase('description') ~ " || '.'",
            "'Average ' || display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' across fiscal years ' || first_year || ' to ' || last_year || ' (table: ' || " ~ topic_phrase('description') ~ " || ').'",
            "'What is the mean yearly ' || " ~ label_phrase('row_label') ~ " || ' of ' || display_name || ' from ' || first_year || ' through ' || last_year || ', per the 10-K table on ' || " ~ topic_phrase('description') ~ " || '?'"
        ]) }} as question,
        'ok' as status
    from series
    where n_years >= 2 and n_years = last_year - first_year + 1
)

select * from lookup
union all select * from abs_change
union all select * from pct_change
union all select * from ratio
union all select * from share_of_total
union all select * from cagr
union all select * from average
