-- materialized: table
-- Per agent (all task types pooled) and per context bucket, for windows 1h, 24h, 7d and all.
-- Key: (agent_name, context_key, context_value, window_name).
select * exclude (task_type)
from {{ ref('int_agent_window_stats') }}
where task_type = '*'
order by agent_name, context_key, context_value, window_name
