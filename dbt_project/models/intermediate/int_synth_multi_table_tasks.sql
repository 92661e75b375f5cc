-- Candidate multi-table tasks: two values from two DIFFERENT tables of the same company and fiscal year,
-- combined by ratio, difference or share. Each table contributes one anchor fact per year: its first
-- "total ..." row if it has one, else its first row with a currency amount (e.g. '$61,307').
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
        b.row_label as b_row_label, b.column_name as b_column_name, b.cell_text as b_cell_text, b.value as b_value
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
        ]) as operands_json
    from pairs as p
),

{% set a_phrase = "display_name || '''s ' || " ~ label_phrase('row_label') ~ " || ' (10-K table on ' || " ~ topic_phrase('description') ~ " || ')'" %}
{% set b_phrase = label_phrase('b_row_label') ~ " || ' (10-K table on ' || " ~ topic_phrase('b_description') ~ " || ')'" %}

cross_table_ratio as (
    select
        pair_key || '|ratio' as candidate_key, 'cross_table_ratio' as family,
        world_id, company, table_name, b_table_name, operands_json,
        'a0 / a1' as gold_expression,
        case when b_value <> 0 then value / b_value end as gold_value,
        'ratio' as gold_unit,
        {{ pick_variant("pair_key || 'ratio'", [
            "'In fiscal ' || period_year || ', what was the ratio of ' || " ~ a_phrase ~ " || ' to ' || " ~ b_phrase ~ " || '?'",
            "'Divide ' || " ~ a_phrase ~ " || ' by ' || " ~ b_phrase ~ " || ', both for fiscal ' || period_year || '.'",
            "'For fiscal ' || period_year || ', how many times ' || " ~ b_phrase ~ " || ' is ' || " ~ a_phrase ~ " || '?'"
        ]) }} as question,
        case when b_value = 0 then 'zero_denominator' else 'ok' end as status
    from combined
),

cross_table_difference as (
    select
        pair_key || '|difference' as candidate_key, 'cross_table_difference' as family,
        world_id, company, table_name, b_table_name, operands_json,
        'a0 - a1' as gold_expression,
        value - b_value as gold_value,
        'number' as gold_unit,
        {{ pick_variant("pair_key || 'difference'", [
            "'In fiscal ' || period_year || ', what is the difference between ' || " ~ a_phrase ~ " || ' and ' || " ~ b_phrase ~ " || ' (first minus second)?'",
            "'Subtract ' || " ~ b_phrase ~ " || ' from ' || " ~ a_phrase ~ " || ' for fiscal ' || period_year || '.'",
            "'By how much does ' || " ~ a_phrase ~ " || ' exceed ' || " ~ b_phrase ~ " || ' in fiscal ' || period_year || '? Give a negative number if it is smaller.'"
        ]) }} as question,
        'ok' as status
    from combined
),

cross_table_share as (
    select
        pair_key || '|share' as candidate_key, 'cross_table_share' as family,
        world_id, company, table_name, b_table_name, operands_json,
        'a0 / (a0 + a1) * 100' as gold_expression,
        case when value > 0 and b_value > 0 then value / (value + b_value) * 100 end as gold_value,
        'percent' as gold_unit,
        {{ pick_variant("pair_key || 'share'", [
            "'In fiscal ' || period_year || ', what percentage of the combined total of ' || " ~ a_phrase ~ " || ' and ' || " ~ b_phrase ~ " || ' does the first represent?'",
            "'Taking ' || " ~ a_phrase ~ " || ' and ' || " ~ b_phrase ~ " || ' for fiscal ' || period_year || ', what share (in percent) of their sum is the first?'",
            "'For fiscal ' || period_year || ', express ' || " ~ a_phrase ~ " || ' as a percent of its sum with ' || " ~ b_phrase ~ " || '.'"
        ]) }} as question,
        case when value <= 0 or b_value <= 0 then 'non_positive_value' else 'ok' end as status
    from combined
)

select * from cross_table_ratio
union all select * from cross_table_difference
union all select * from cross_table_share
