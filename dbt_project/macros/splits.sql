{#- A number in [0, 1) that depends only on the text of `key`: the first 32 bits of its md5. -#}
{% macro unit_interval(key) -%}
(cast(('0x' || left(md5({{ key }}), 8)) as ubigint) / 4294967296.0)
{%- endmacro %}

{#- The split whose cumulative share of [0, 1) contains `point`; `fractions` maps split -> share, in order
    (e.g. {train: 0.7, val: 0.15, test: 0.15}); the last split takes the rest. -#}
{% macro split_by_fractions(point, fractions) -%}
{%- set names = fractions.keys() | list -%}
{%- set ns = namespace(total=0.0) -%}
(case
    {%- for name in names[:-1] %}
    {%- set ns.total = ns.total + fractions[name] %}
    when {{ point }} < {{ ns.total }} then '{{ name }}'
    {%- endfor %}
    else '{{ names[-1] }}'
end)
{%- endmacro %}
