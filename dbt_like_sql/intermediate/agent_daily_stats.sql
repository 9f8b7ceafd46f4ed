-- materialized: table
-- The incremental unit: additive counts and sums per (event_date, agent, task_type, context bucket).
-- task_type = '*' rows pool all task types of an agent. Every column is a count or a sum, so any set
-- of days rolls up exactly by summing (windows, decay, posteriors never rescan raw events).
select
    e.event_date,
    e.agent_name,
    case when grouping(e.task_type) = 1 then '*' else e.task_type end as task_type,
    e.context_key,
    e.context_value,
    count(*) as n_events,
    count(*) filter (where e.status = 'success') as successes,
    count(*) filter (where e.status = 'failure') as failures,
    count(*) filter (where e.status = 'partial') as partials,
    count(*) filter (where e.status = 'timeout') as timeouts,
    coalesce(sum(e.reward) filter (where e.status = 'partial'), 0) as partial_reward,
    sum(e.reward) as reward_sum,
    count(e.latency_ms) as latency_n,
    coalesce(sum(e.latency_ms), 0) as latency_sum,
    count(e.llm_latency_ms) as llm_latency_n,
    coalesce(sum(e.llm_latency_ms), 0) as llm_latency_sum,
    count(e.tokens_used) as tokens_n,
    cast(coalesce(sum(e.tokens_used), 0) as bigint) as tokens_sum,
    count(e.cost_usd) as cost_n,
    coalesce(sum(e.cost_usd), 0) as cost_sum,
    count(e.quality_score) as quality_n,
    coalesce(sum(e.quality_score), 0) as quality_sum,
    min(e.event_time) as first_event_at,
    max(e.event_time) as last_event_at
from {{ ref('stg_outcome_event_contexts') }} as e
group by grouping sets (
    (e.event_date, e.agent_name, e.task_type, e.context_key, e.context_value),
    (e.event_date, e.agent_name, e.context_key, e.context_value)
)
