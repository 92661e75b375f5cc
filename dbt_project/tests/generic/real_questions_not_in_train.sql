{#- Real FinQA / TAT-QA questions are the realistic evaluation: none in train unless var('real_tasks_in_train'). -#}
{% test real_questions_not_in_train(model) %}
select *
from {{ model }}
where source in ('finqa', 'tatqa') and split = 'train'
  and not {{ var('real_tasks_in_train') }}
{% endtest %}
