-- Tasks that need two different tables of the same company and fiscal year.
select * from {{ ref('tasks') }} where question_type = 'multi_table'
