-- Tasks answerable from one table (synthesised single-table families + real FinQA / TAT-QA questions).
select * from {{ ref('tasks') }} where question_type = 'single_table'
