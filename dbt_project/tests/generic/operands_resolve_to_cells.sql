{#- Every gold operand (table, row label, column, cell text) is a real cell of world_cells in the task's world. -#}
{% test operands_resolve_to_cells(model, column_name, world_cells) %}
with operands as (
    select task_id, world_id, unnest(cast(json_extract({{ column_name }}, '$[*]') as json[])) as op
    from {{ model }}
)
select o.*
from operands as o
left join {{ world_cells }} as c
  on c.world_id = o.world_id
 and c.table_name = json_extract_string(o.op, '$.table')
 and c.row_label = json_extract_string(o.op, '$.row_label')
 and c.column_name = json_extract_string(o.op, '$.column')
 and c.cell_text = json_extract_string(o.op, '$.cell_text')
where c.world_id is null
{% endtest %}
