-- materialized: table
-- Per (task_type, agent) and per context bucket, for windows 1h, 24h, 7d and all.
-- Key: (task_type, agent_name, context_key, context_value, window_name).
select *
from {{ ref('int_agent_window_stats') }}
where task_type <> '*'
order by task_type, agent_name, context_key, context_value, window_name
