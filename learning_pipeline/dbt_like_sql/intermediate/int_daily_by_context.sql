-- materialized: table
-- Raw events reduced once per (event_date, agent, task_type, context JSON text): every column additive.
-- Context keys are extracted from these (few) rows, not from every event. Status counts are sums of
-- 0/1 flags (cheaper per event than filtered counts); repeated aggregates are computed once.
select
    event_date,
    agent_name,
    task_type,
    context,
    count(*) as n_events,
    sum(cast(status = 'success' as integer)) as successes,
    sum(cast(status = 'failure' as integer)) as failures,
    sum(cast(status = 'partial' as integer)) as partials,
    sum(cast(status = 'timeout' as integer)) as timeouts,
    coalesce(sum(case when status = 'partial' then reward end), 0) as partial_reward,
    -- reward is 0 for failure/timeout and 1 - its penalties for success (stg_outcome_events): with zero
    -- penalty weights the sum is the success count plus the partials' rewards, exactly
    sum(cast(status = 'success' as integer))
        - coalesce(sum(case when status = 'success' then 1.0 - reward end), 0)
        + coalesce(sum(case when status = 'partial' then reward end), 0) as reward_sum,
    count(latency_ms) as latency_n,
    coalesce(sum(latency_ms), 0) as latency_sum,
    count(llm_latency_ms) as llm_latency_n,
    coalesce(sum(llm_latency_ms), 0) as llm_latency_sum,
    count(tokens_used) as tokens_n,
    cast(coalesce(sum(tokens_used), 0) as bigint) as tokens_sum,
    count(cost_usd) as cost_n,
    coalesce(sum(cost_usd), 0) as cost_sum,
    count(quality_score) as quality_n,
    coalesce(sum(quality_score), 0) as quality_sum,
    min(event_time) as first_event_at,
    max(event_time) as last_event_at
from {{ ref('stg_outcome_events') }}
group by all
