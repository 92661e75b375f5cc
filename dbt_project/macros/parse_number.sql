{#-
  Number parsing for raw financial cell text, used by every staging model.

  parse_number(expr) -> DOUBLE or NULL
    '$61,307' -> 61307        '(1,234)' -> -1234      '3.4%' -> 3.4 (percent points)   '(3.2)%' -> -3.2
    '$ 40678' -> 40678        '8.1 years' -> 8.1      '$1.2 billion' -> 1.2e9
    '—', '-', '', NULL, 'n/a', '2024 vs 2023' -> NULL (blank or not one number)
  number_kind(expr) -> 'currency' | 'percent' | 'years' | 'multiple' | 'number' | NULL (not a number)

  A cell is numeric only if the WHOLE text is one number with optional sign, parentheses,
  currency prefix and one unit / scale suffix (strict: prose containing a number is not a number).
  Thousands separators group three digits, as in rl_assets.numbers ('11,54' is not a number).
  Where this macro reads a number, rl_assets.numbers.parse_number reads the same value and sign
  (tests/test_pipeline.py checks it on every world cell); that parser, made for free-text answers,
  also reads the first number of prose ('S&P 500 Index' -> 500), which is deliberately not a number here.
-#}

{% macro _number_text(expr) -%}
translate(regexp_replace(lower(trim(coalesce(cast({{ expr }} as varchar), ''))), '\s+', ' ', 'g'), '−–', '--')
{%- endmacro %}

{% macro _number_pattern() -%}
'^\(?\s*-?\s*(usd|us\$|\$)?\s*\(?\s*-?\s*(\d{1,3}(,\d{3})+(\.\d+)?|\d+(\.\d+)?|\.\d+)\s*(%|percent|pct|years?|yrs?|x|times|thousand|million|billion|trillion|mn|bn|k|m|b)?\s*\)?\s*%?$'
{%- endmacro %}

{% macro parse_number(expr) -%}
(case
    when regexp_full_match({{ _number_text(expr) }}, {{ _number_pattern() }})
    then
        (case when regexp_matches({{ _number_text(expr) }}, '^\(|^-|^(usd|us\$|\$)\s*[(-]') then -1.0 else 1.0 end)
        * try_cast(replace(regexp_extract({{ _number_text(expr) }}, '(\d{1,3}(,\d{3})+(\.\d+)?|\d+(\.\d+)?|\.\d+)', 1), ',', '') as double)
        * (case regexp_extract({{ _number_text(expr) }}, '(thousand|million|billion|trillion|mn|bn|k|m|b)\s*\)?$', 1)
            when 'thousand' then 1e3 when 'k' then 1e3
            when 'million' then 1e6 when 'mn' then 1e6 when 'm' then 1e6
            when 'billion' then 1e9 when 'bn' then 1e9 when 'b' then 1e9
            when 'trillion' then 1e12
            else 1.0 end)
    else null
end)
{%- endmacro %}

{% macro number_kind(expr) -%}
(case
    when not regexp_full_match({{ _number_text(expr) }}, {{ _number_pattern() }}) then null
    when regexp_matches({{ _number_text(expr) }}, '(%|percent|pct)\s*\)?$|\)\s*%$') then 'percent'
    when regexp_matches({{ _number_text(expr) }}, '(years?|yrs?)\s*\)?$') then 'years'
    when regexp_matches({{ _number_text(expr) }}, '(x|times)\s*\)?$') then 'multiple'
    when regexp_matches({{ _number_text(expr) }}, '(usd|\$)') then 'currency'
    else 'number'
end)
{%- endmacro %}

{#- lower-case SQL-friendly identifier: 'December 31, 2013 (in millions)' -> 'december_31_2013_in_millions' -#}
{% macro normalize_identifier(expr) -%}
nullif(trim(regexp_replace(lower(trim(coalesce({{ expr }}, ''))), '[^a-z0-9]+', '_', 'g'), '_'), '')
{%- endmacro %}

{#- 'state_taxes,_net_of_federal_effect' -> 'state taxes, net of federal effect' -#}
{% macro humanize(expr) -%}
trim(regexp_replace(replace(coalesce({{ expr }}, ''), '_', ' '), '\s+', ' ', 'g'))
{%- endmacro %}
