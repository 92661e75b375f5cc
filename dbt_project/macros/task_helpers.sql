{#- Helpers for task synthesis (models/intermediate/int_synth_*). -#}

{#- One gold operand: where the number lives and what it is. The oracle fetches it through sql_query. -#}
{% macro operand_json(alias) -%}
json_object(
    'table', {{ alias }}.table_name,
    'row_label_column', {{ alias }}.row_label_column,
    'row_label', {{ alias }}.row_label,
    'column', {{ alias }}.column_name,
    'cell_text', {{ alias }}.cell_text,
    'value', {{ alias }}.value
)
{%- endmacro %}

{#- Deterministic choice of a surface variant from a key. -#}
{% macro pick_variant(key, variants) -%}
(case md5_number({{ key }}) % {{ variants | length }}
    {%- for v in variants %}
    when {{ loop.index0 }} then {{ v }}
    {%- endfor %}
end)
{%- endmacro %}

{#- Quoted, human-readable row label: 'state_taxes,_net_of_federal_effect' -> "state taxes, net of federal effect" -#}
{% macro label_phrase(expr) -%}
('"' || {{ humanize(expr) }} || '"')
{%- endmacro %}

{#- Short topic of a table from its description. -#}
{% macro topic_phrase(expr) -%}
(case when length({{ expr }}) > 110 then left({{ expr }}, 107) || '...' else {{ expr }} end)
{%- endmacro %}

{#- Fallback display name for a company folder name: 'my_corp' -> 'My Corp'. -#}
{% macro company_display_name(expr) -%}
array_to_string(list_transform(string_split({{ humanize(expr) }}, ' '), lambda w: upper(left(w, 1)) || substr(w, 2)), ' ')
{%- endmacro %}

{#- The scale a text states with a plural scale word ('(in millions)', 'dollars_in_thousands',
    'revenue_millions'): 'thousand' | 'million' | 'billion', 'ambiguous' when it states two different
    ones ('net income in millions and shares in thousands'), NULL when none. A singular word is an
    amount, not a scale ('$700 million notes'). -#}
{% macro stated_scale(expr) -%}
(case
    when not regexp_matches(replace(lower(coalesce({{ expr }}, '')), '_', ' '), '\b(thousands|millions|billions)\b') then null
    when regexp_matches(replace(lower({{ expr }}), '_', ' '), '\bthousands\b')::int
       + regexp_matches(replace(lower({{ expr }}), '_', ' '), '\bmillions\b')::int
       + regexp_matches(replace(lower({{ expr }}), '_', ' '), '\bbillions\b')::int > 1 then 'ambiguous'
    when regexp_matches(replace(lower({{ expr }}), '_', ' '), '\bthousands\b') then 'thousand'
    when regexp_matches(replace(lower({{ expr }}), '_', ' '), '\bmillions\b') then 'million'
    else 'billion'
end)
{%- endmacro %}
