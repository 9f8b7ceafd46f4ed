-- materialized: table
-- The incremental unit: additive counts and sums per (event_date, agent, task_type, context bucket).
-- task_type = '*' rows pool all task types of an agent. Every column is a count or a sum, so any set
-- of days rolls up exactly by summing (day windows, decay, posteriors never rescan raw events).
select
    d.event_date,
    d.agent_name,
    case when grouping(d.task_type) = 1 then '*' else d.task_type end as task_type,
    b.context_key,
    b.context_value,
    cast(sum(d.n_events) as bigint) as n_events,
    cast(sum(d.successes) as bigint) as successes,
    cast(sum(d.failures) as bigint) as failures,
    cast(sum(d.partials) as bigint) as partials,
    cast(sum(d.timeouts) as bigint) as timeouts,
    sum(d.partial_reward) as partial_reward,
    sum(d.reward_sum) as reward_sum,
    cast(sum(d.latency_n) as bigint) as latency_n,
    sum(d.latency_sum) as latency_sum,
    cast(sum(d.llm_latency_n) as bigint) as llm_latency_n,
    sum(d.llm_latency_sum) as llm_latency_sum,
    cast(sum(d.tokens_n) as bigint) as tokens_n,
    cast(sum(d.tokens_sum) as bigint) as tokens_sum,
    cast(sum(d.cost_n) as bigint) as cost_n,
    sum(d.cost_sum) as cost_sum,
    cast(sum(d.quality_n) as bigint) as quality_n,
    sum(d.quality_sum) as quality_sum,
    min(d.first_event_at) as first_event_at,
    max(d.last_event_at) as last_event_at
from {{ ref('int_daily_by_context') }} as d
join {{ ref('int_daily_context_buckets') }} as b on d.context is not distinct from b.context
group by grouping sets (
    (d.event_date, d.agent_name, d.task_type, b.context_key, b.context_value),
    (d.event_date, d.agent_name, b.context_key, b.context_value)
)
