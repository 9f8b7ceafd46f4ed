-- materialized: view
-- Per agent and effective task type: executions, success rate and quality, ranked within the agent
-- (success rate, then quality, then executions); the config's preferred task types come from here.
select
    agent_name,
    task_type,
    count(*) as executions,
    count(*) filter (where status = 'success') as successes,
    count(*) filter (where status = 'success') / count(*) as success_rate,
    avg(quality_score) as quality_mean,
    row_number() over (
        partition by agent_name
        order by count(*) >= {{ var('config_min_samples', 10) }} desc,
                 count(*) filter (where status = 'success') / count(*) desc,
                 avg(quality_score) desc nulls last, count(*) desc, task_type
    ) as rank,
    count(*) >= {{ var('config_min_samples', 10) }} as eligible
from {{ ref('training_events') }}
group by agent_name, task_type
