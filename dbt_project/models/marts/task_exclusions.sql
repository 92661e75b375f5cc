-- Every candidate that could not become a task, with the reason. Nothing is dropped silently:
-- cells that cannot seed a task, synthesised candidates with an invalid gold answer, and real
-- questions not answerable from their table. (Valid candidates not drawn by the per-table
-- sampling are not exclusions; see vars in dbt_project.yml.)
select 'sec10k' as source, 'cell' as candidate_kind, world_id || '|' || table_name || '|' || row_index || '|' || column_index as candidate_key,
       'any' as family, status as reason
from {{ ref('int_sec10k_facts') }}
where status <> 'ok'
union all
select 'sec10k', 'single_table_candidate', candidate_key, family, status
from {{ ref('int_synth_single_table_tasks') }}
where status <> 'ok'
union all
select 'sec10k', 'multi_table_candidate', candidate_key, family, status
from {{ ref('int_synth_multi_table_tasks') }}
where status <> 'ok'
union all
select source, 'real_question', question_id, analytic_type, status
from {{ ref('int_real_tasks') }}
where status <> 'ok'
