-- One row per SEC 10-K table (world = company).
select
    company as world_id,
    company,
    table_name,
    coalesce(
        nullif(rtrim({{ humanize('description') }}, ': '), ''),
        {{ humanize("regexp_replace(regexp_replace(regexp_replace(table_name, '^[a-z]+_(gaap_)?', ''), 'TableTextBlock$', ''), '([a-z])([A-Z])', '\\1 \\2', 'g')") }}
    ) as description,
    n_rows,
    n_cols,
    source_file
from {{ source('raw', 'sec10k_tables') }}
