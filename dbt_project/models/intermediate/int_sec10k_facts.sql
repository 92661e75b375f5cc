-- Candidate facts for task synthesis: sec10k cells in a period column (a fiscal year such as `2024`
-- or a date such as `december_31_2024`), each with a status saying whether it can seed a task.
-- Non-ok statuses surface in task_exclusions.
--
-- scale: the scale the table states for the cell ('' | thousand | million | billion), the most specific
-- first: its row label, its column header, the table's description (macro stated_scale). Only amounts
-- (currency / plain numbers) have one, and not rows that are per-share, per-unit, percentages, ratios,
-- prices, share counts, day / year counts or headcounts (var unscaled_row_pattern), nor cells whose row,
-- column or table states two different scales.
with cells as (
    select
        c.*,
        t.company,
        t.description,
        t.row_label_column,
        cast(coalesce(
            nullif(regexp_extract(c.column_name, '^(fy_?|fiscal_?(year_)?)?((19|20)\d\d)$', 3), ''),
            nullif(regexp_extract(c.column_name, '^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*_\d{1,2}_((19|20)\d\d)$', 2), '')
        ) as integer) as period_year
    from {{ ref('world_cells') }} as c
    join {{ ref('world_tables') }} as t using (world_id, table_name)
    where c.source = 'sec10k'
),

flagged as (
    select
        *,
        count(*) over (partition by world_id, table_name, lower(row_label), column_index) as label_count,
        count(*) over (partition by world_id, table_name, row_index, period_year) as period_count
    from cells
    where column_index > 0
      and period_year is not null
)

select
    world_id,
    company,
    table_name,
    description,
    row_label_column,
    row_index,
    row_label,
    column_index,
    column_name,
    period_year,
    regexp_full_match(column_name, '^(fy_?|fiscal_?(year_)?)?(19|20)\d\d$') as is_fiscal_year,
    case when regexp_full_match(column_name, '^(fy_?|fiscal_?(year_)?)?(19|20)\d\d$')
         then 'in fiscal ' || period_year
         else 'as of ' || {{ humanize('column_name') }}
    end as period_phrase,
    cell_text,
    value,
    value_kind,
    case
        when value_kind not in ('currency', 'number') then ''
        when regexp_matches(replace(lower(row_label), '_', ' '), '{{ var("unscaled_row_pattern") }}') then ''
        else coalesce(nullif(coalesce({{ stated_scale('row_label') }}, {{ stated_scale('column_name') }},
                                      {{ stated_scale('description') }}), 'ambiguous'), '')
    end as scale,
    case
        when row_label is null or row_label = '' then 'blank_row_label'
        when label_count > 1 then 'duplicate_row_label'
        when period_count > 1 then 'duplicate_period_column'
        when trim(coalesce(cell_text, '')) in ('', '—', '-', '–', '$—', '$ —') then 'blank_cell'
        when value is null then 'non_numeric_cell'
        else 'ok'
    end as status
from flagged
