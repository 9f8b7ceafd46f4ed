-- materialized: table
-- Rolling windows 1h and 24h ending at T, and the window of the same length just before, from raw
-- events. Only partitions on or after var recent_from are scanned (the caller passes T's date - 2 days;
-- the default scans everything and gives the same result). Latency quantiles here are exact (quantile_cont).
-- The events are reduced once per (window, current/previous, agent, task_type, context text, status, error
-- key); counts, sums and error counts come from those few rows, context keys are extracted from the
-- distinct context texts only, and only the current windows' latencies are kept for the exact quantiles.
with ref_time as (
    select as_of from {{ ref('int_reference_time') }}
),
windows as (
    select * from (values ('1h', interval 1 hour), ('24h', interval 24 hour))
        as w(window_name, window_length)
),
ev as materialized (
    select
        e.agent_name, e.task_type, e.context, e.status, e.error_type, e.event_time, e.latency_ms,
        e.llm_latency_ms, e.tokens_used, e.cost_usd, e.quality_score, e.reward,
        w.window_name,
        e.event_time > r.as_of - w.window_length as in_current
    from {{ ref('stg_outcome_events') }} as e
    cross join ref_time as r
    join windows as w
        on e.event_time > r.as_of - 2 * w.window_length and e.event_time <= r.as_of
    where e.event_date >= cast({{ var('recent_from', '1970-01-01') }} as date)
),
grouped as (
    select
        window_name, in_current, agent_name, task_type, context, status,
        case when status in ('failure', 'timeout')
            then coalesce(error_type, case when status = 'timeout' then 'timeout' else 'unknown' end)
        end as error_key,
        count(*) as n,
        sum(reward) as reward_sum,
        count(latency_ms) as latency_n,
        sum(latency_ms) as latency_sum,
        count(llm_latency_ms) as llm_latency_n,
        sum(llm_latency_ms) as llm_latency_sum,
        count(tokens_used) as tokens_n,
        sum(tokens_used) as tokens_sum,
        count(cost_usd) as cost_n,
        sum(cost_usd) as cost_sum,
        count(quality_score) as quality_n,
        sum(quality_score) as quality_sum,
        min(event_time) as first_event_at,
        max(event_time) as last_event_at
    from ev
    group by all
),
-- Each distinct context text once at the broad level ('*', '*') and once per context key with a value.
buckets as (
    select
        context,
        unnest(context_buckets(context, {{ var('context_keys', ['complexity', 'domain']) }}), recursive := true)
    from (select distinct context from grouped)
),
errors as (
    select window_name, agent_name, task_type, context_key, context_value,
        json_group_object(error_key, n_errors) as failures_by_error_type
    from (
        select
            g.window_name, g.agent_name,
            case when grouping(g.task_type) = 1 then '*' else g.task_type end as task_type,
            b.context_key, b.context_value, g.error_key,
            cast(sum(g.n) as bigint) as n_errors
        from grouped as g
        join buckets as b on g.context is not distinct from b.context
        where g.in_current and g.error_key is not null
        group by grouping sets (
            (g.window_name, g.agent_name, g.task_type, b.context_key, b.context_value, g.error_key),
            (g.window_name, g.agent_name, b.context_key, b.context_value, g.error_key)
        )
    )
    group by all
),
agg as (
    select
        g.window_name,
        g.agent_name,
        case when grouping(g.task_type) = 1 then '*' else g.task_type end as task_type,
        b.context_key,
        b.context_value,
        cast(coalesce(sum(g.n) filter (where g.in_current), 0) as bigint) as executions,
        cast(coalesce(sum(g.n) filter (where g.in_current and g.status = 'success'), 0) as bigint) as successes,
        cast(coalesce(sum(g.n) filter (where g.in_current and g.status = 'failure'), 0) as bigint) as failures,
        cast(coalesce(sum(g.n) filter (where g.in_current and g.status = 'partial'), 0) as bigint) as partials,
        cast(coalesce(sum(g.n) filter (where g.in_current and g.status = 'timeout'), 0) as bigint) as timeouts,
        sum(g.reward_sum) filter (where g.in_current) as reward_sum,
        sum(g.latency_sum) filter (where g.in_current)
            / nullif(sum(g.latency_n) filter (where g.in_current), 0) as latency_avg_ms,
        sum(g.llm_latency_sum) filter (where g.in_current)
            / nullif(sum(g.llm_latency_n) filter (where g.in_current), 0) as llm_latency_avg_ms,
        cast(coalesce(sum(g.tokens_sum) filter (where g.in_current), 0) as bigint) as tokens_total,
        sum(g.tokens_sum) filter (where g.in_current)
            / nullif(sum(g.tokens_n) filter (where g.in_current), 0) as tokens_avg,
        coalesce(sum(g.cost_sum) filter (where g.in_current), 0) as cost_total_usd,
        sum(g.cost_sum) filter (where g.in_current)
            / nullif(sum(g.cost_n) filter (where g.in_current), 0) as cost_avg_usd,
        sum(g.quality_sum) filter (where g.in_current)
            / nullif(sum(g.quality_n) filter (where g.in_current), 0) as quality_mean,
        min(g.first_event_at) filter (where g.in_current) as first_event_at,
        max(g.last_event_at) filter (where g.in_current) as last_event_at,
        cast(coalesce(sum(g.n) filter (where not g.in_current), 0) as bigint) as prev_executions,
        cast(coalesce(sum(g.n) filter (where not g.in_current and g.status = 'success'), 0) as bigint)
            as prev_successes,
        sum(g.latency_sum) filter (where not g.in_current)
            / nullif(sum(g.latency_n) filter (where not g.in_current), 0) as prev_latency_avg_ms
    from grouped as g
    join buckets as b on g.context is not distinct from b.context
    group by grouping sets (
        (g.window_name, g.agent_name, g.task_type, b.context_key, b.context_value),
        (g.window_name, g.agent_name, b.context_key, b.context_value)
    )
    having sum(g.n) filter (where g.in_current) > 0
),
quantiles as (
    select
        e.window_name,
        e.agent_name,
        case when grouping(e.task_type) = 1 then '*' else e.task_type end as task_type,
        b.context_key,
        b.context_value,
        quantile_cont(e.latency_ms, [0.5, 0.95, 0.99]) as latency_q
    from ev as e
    join buckets as b on e.context is not distinct from b.context
    where e.in_current
    group by grouping sets (
        (e.window_name, e.agent_name, e.task_type, b.context_key, b.context_value),
        (e.window_name, e.agent_name, b.context_key, b.context_value)
    )
)
select
    agg.*,
    q.latency_q[1] as latency_p50_ms,
    q.latency_q[2] as latency_p95_ms,
    q.latency_q[3] as latency_p99_ms,
    coalesce(errors.failures_by_error_type, '{}') as failures_by_error_type
from agg
left join quantiles as q using (window_name, agent_name, task_type, context_key, context_value)
left join errors using (window_name, agent_name, task_type, context_key, context_value)
