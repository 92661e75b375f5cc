-- Every number a real FinQA program / TAT-QA derivation uses, matched to a cell of the question's own table.
-- An unmatched number that is not an allowed constant makes the question unanswerable from the table.
{% set constants = var('allowed_program_constants') %}
with finqa_args as (
    select
        'finqa' as source, question_id, world_id, table_name,
        unnest(json_extract_string(program_steps, '$[*].args[*]')) as token
    from {{ ref('stg_finqa__questions') }}
),

tatqa_args as (
    select
        'tatqa' as source, question_id, world_id, table_name,
        unnest(regexp_extract_all(derivation, '\d[\d,]*(?:\.\d+)?|\.\d+')) as token
    from {{ ref('stg_tatqa__questions') }}
    where answer_type = 'arithmetic'
),

numbers as (
    select distinct
        source, question_id, world_id, table_name, trim(token) as token,
        abs(try_cast(replace(replace(trim(token), ',', ''), '%', '') as double)) as number
    from (select * from finqa_args union all select * from tatqa_args)
    where regexp_full_match(trim(token), '-?(\d[\d,]*(\.\d+)?|\.\d+)%?')
),

cells as (
    select c.*, t.row_label_column,
        count(*) over (partition by c.world_id, c.table_name, lower(c.row_label), c.column_index) as label_count
    from {{ ref('world_cells') }} as c
    join {{ ref('world_tables') }} as t using (world_id, table_name)
    where c.column_index > 0 and c.value is not null and coalesce(c.row_label, '') <> ''
),

matches as (
    select
        n.*,
        c.row_label, c.row_label_column, c.column_name, c.cell_text, c.value
    from numbers as n
    left join cells as c
      on c.world_id = n.world_id and c.table_name = n.table_name
     and abs(abs(c.value) - n.number) <= 1e-9 * greatest(1, n.number)
    -- prefer a cell whose row label is unique in its table, then the first in reading order
    qualify row_number() over (
        partition by n.source, n.question_id, n.token
        order by (c.label_count = 1) desc nulls last, c.row_index, c.column_index
    ) = 1
)

select
    source,
    question_id,
    world_id,
    table_name,
    token,
    number,
    column_name is not null as matched,
    column_name is null and number in ({{ constants | join(', ') }}) as is_constant,
    case when column_name is not null then
        json_object(
            'table', table_name, 'row_label_column', row_label_column, 'row_label', row_label,
            'column', column_name, 'cell_text', cell_text, 'value', value, 'literal', token
        )
    end as operand_json
from matches
