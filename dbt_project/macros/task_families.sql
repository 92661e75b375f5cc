{#-
  Task synthesis from declarative family specs (models/intermediate/int_synth_*_tasks.sql).

  A family spec is a dict:
    name         family id (analytic_type), e.g. 'pct_change'
    source       the CTE its candidates come from (one row per candidate)
    key          SQL: the candidate key (stable: task_id = md5(family | key))
    operands     SQL: JSON list of gold operands (default: the source's operands_json)
    expression   SQL: the gold expression over a0..aN (the oracle evaluates it with the calculator)
    value        SQL: the exact gold value
    unit         SQL: 'number' | 'percent' | 'ratio'
    scale        SQL: '' | 'thousand' | 'million' | 'billion' (the scale the gold value is stated in)
    variant_key  SQL: what the question variant is chosen from
    questions    question templates with {placeholders} (see phrase), one is picked per candidate
    status       SQL: 'ok' or the reason the candidate is excluded (default 'ok')
    where        SQL: which source rows are candidates at all (optional)
    columns      extra SQL columns to carry (optional)
-#}

{#- SQL expression for each {placeholder} of a question template. -#}
{% macro phrase_placeholders() -%}
{{ return({
    'company': 'display_name',
    'label': label_phrase('row_label'),
    'b_label': label_phrase('b_row_label'),
    'period': 'period_phrase',
    'topic': topic_phrase('description'),
    'b_topic': topic_phrase('b_description'),
    'year': 'period_year',
    'prev_year': 'prev_year',
    'first_year': 'first_year',
    'last_year': 'last_year',
}) }}
{%- endmacro %}

{#- A question template as a SQL string expression: "What was {label} for {company}?" ->
    'What was ' || <label SQL> || ' for ' || display_name || '?' -#}
{% macro phrase(template) -%}
{%- set placeholders = phrase_placeholders() -%}
{%- set parts = [] -%}
{%- for piece in modules.re.split('([{][a-z_]+[}])', template) if piece -%}
    {%- if piece.startswith('{') and piece.endswith('}') -%}
        {%- do parts.append(placeholders[piece[1:-1]]) -%}
    {%- else -%}
        {%- do parts.append("'" ~ piece.replace("'", "''") ~ "'") -%}
    {%- endif -%}
{%- endfor -%}
{{ parts | join(' || ') }}
{%- endmacro %}

{#- One family's candidates (see the spec above). -#}
{% macro synth_family(f) -%}
select
    {{ f.key }} as candidate_key,
    '{{ f.name }}' as family,
    world_id, company, table_name,
    {%- for c in f.get('columns', []) %}
    {{ c }},
    {%- endfor %}
    {{ f.get('operands', 'operands_json') }} as operands_json,
    {{ f.expression }} as gold_expression,
    {{ f.value }} as gold_value,
    {{ f.unit }} as gold_unit,
    {{ f.scale }} as gold_scale,
    {%- set variants = [] %}
    {%- for q in f.questions %}{% do variants.append(phrase(q)) %}{% endfor %}
    {{ pick_variant(f.variant_key, variants) }} as question,
    {{ f.get('status', "'ok'") }} as status
from {{ f.source }}
{%- if f.get('where') %}
where {{ f.where }}
{%- endif %}
{%- endmacro %}

{#- Every family's candidates, one union. -#}
{% macro synth_families(families) -%}
{%- for f in families %}
{{ 'union all ' if not loop.first }}({{ synth_family(f) }})
{%- endfor %}
{%- endmacro %}
