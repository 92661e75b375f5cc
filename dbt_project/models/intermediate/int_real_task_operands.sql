-- Every number a real FinQA program / TAT-QA derivation uses (listed by the raw loader's interpreter,
-- rl_assets.programs), matched to a cell of the question's own table. An unmatched number that is not a
-- constant makes the question unanswerable from the table. Constants, the same rule for both sources:
-- FinQA's const_* tokens; var('allowed_program_constants') anywhere; var('count_constants') as divisors.
{% set constants = var('allowed_program_constants') %}
{% set count_constants = var('count_constants') %}
with programs as (
    select 'finqa' as source, question_id, world_id, table_name, program_numbers
    from {{ ref('stg_finqa__questions') }}
    union all
    select 'tatqa', question_id, world_id, table_name, program_numbers
    from {{ ref('stg_tatqa__questions') }}
    where answer_type = 'arithmetic'
),

occurrences as (
    select source, question_id, world_id, table_name, unnest(
        from_json(program_numbers, '[{"text": "VARCHAR", "magnitude": "DOUBLE", "position": "VARCHAR", "constant": "BOOLEAN"}]'),
        recursive := true
    )
    from programs
    where program_numbers is not null
),

numbers as (
    -- one row per distinct literal; FinQA const_* tokens need no table cell
    select
        source, question_id, world_id, table_name,
        text as token,
        any_value(magnitude) as number,
        bool_and(position = 'divisor') as only_divisor
    from occurrences
    where not constant
    group by all
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
    column_name is null and (
        number in ({{ constants | join(', ') }})
        or (only_divisor and number in ({{ count_constants | join(', ') }}))
    ) as is_constant,
    case when column_name is not null then
        json_object(
            'table', table_name, 'row_label_column', row_label_column, 'row_label', row_label,
            'column', column_name, 'cell_text', cell_text, 'value', value, 'literal', token
        )
    end as operand_json
from matches
