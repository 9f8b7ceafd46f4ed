-- materialized: view
-- One row per validated outcome event (source: the `outcome_events` lake view).
-- task_type: the effective task class, coalesce(task_type, action_type, 'unspecified').
-- reward (the bandit's outcome rule): success = 1, failure = 0, timeout = 0,
--   partial = quality_score (0.5 when the partial event has no quality score).
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
    case status
        when 'success' then 1.0
        when 'partial' then coalesce(quality_score, 0.5)
        else 0.0
    end as reward
from {{ source('outcome_events') }}
where event_date >= cast({{ var('start_date', '1970-01-01') }} as date)
  and event_date <= cast({{ var('end_date', '9999-12-31') }} as date)
