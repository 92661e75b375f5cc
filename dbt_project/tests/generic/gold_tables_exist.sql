{#- Every table named in a task's gold_tables (a JSON list) exists in world_tables for the task's world. -#}
{% test gold_tables_exist(model, column_name, world_tables) %}
with gold as (
    select task_id, world_id, unnest(cast(json_extract_string({{ column_name }}, '$[*]') as varchar[])) as table_name
    from {{ model }}
)
select gold.*
from gold
left join {{ world_tables }} as w using (world_id, table_name)
where w.table_name is null
{% endtest %}
