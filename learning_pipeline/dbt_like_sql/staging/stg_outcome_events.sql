-- materialized: view
-- One row per validated outcome event (source: the `outcome_events` lake view).
-- task_type: the effective task class, coalesce(task_type, action_type, 'unspecified').
-- reward (the bandit's outcome rule, macro `reward` in macros/reward.sql): reward_base (success = 1,
--   failure = timeout = 0, partial = quality_score or 0.5 under reward_rule 'graded', 0 under 'success')
--   minus cost_penalty and latency_penalty, clipped to [0, 1]. Vars reward_task_types / reward_cost_weights /
--   reward_latency_weights are parallel lists of the weights per task type ('*' = the default row); the
--   defaults (zero weights) make reward = reward_base.
-- Vars start_date / end_date restrict the scan to a range of event_date partitions.
select
    event_id,
    agent_name,
    coalesce(task_type, action_type, 'unspecified') as task_type,
    "timestamp" as event_time,
    cast(event_date as date) as event_date,
    status,
    error_type,
    coalesce(latency_ms, duration_ms) as latency_ms,
    llm_latency_ms,
    tokens_used,
    cost_usd,
    quality_score,
    context,
    reward_base(status, quality_score, {{ var('reward_rule', 'graded') }}) as reward_base,
    cost_penalty(cost_usd, coalesce(task_type, action_type, 'unspecified'), {{ var('reward_task_types', ['*']) }},
        {{ var('reward_cost_weights', [0.0]) }}) as cost_penalty,
    latency_penalty(coalesce(latency_ms, duration_ms), coalesce(task_type, action_type, 'unspecified'),
        {{ var('reward_task_types', ['*']) }}, {{ var('reward_latency_weights', [0.0]) }}) as latency_penalty,
    reward(status, quality_score, cost_usd, coalesce(latency_ms, duration_ms),
        coalesce(task_type, action_type, 'unspecified'), {{ var('reward_rule', 'graded') }},
        {{ var('reward_task_types', ['*']) }}, {{ var('reward_cost_weights', [0.0]) }},
        {{ var('reward_latency_weights', [0.0]) }}) as reward
from {{ source('outcome_events') }}
where event_date >= cast({{ var('start_date', '1970-01-01') }} as date)
  and event_date <= cast({{ var('end_date', '9999-12-31') }} as date)
