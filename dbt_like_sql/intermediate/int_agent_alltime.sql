-- materialized: table
-- The 'all' window: every whole day up to T's date (day-granular: with an as_of inside a day, that
-- day's later events count too), summed from the daily aggregates; latency quantiles from
-- the summed log-histograms; success-rate EMA over the daily success rates (var ema_alpha, default 0.3):
-- ema_1 = rate_1, ema_d = alpha * rate_d + (1 - alpha) * ema_(d-1), over the days with events, oldest first.
with ref_time as (
    select as_of, cast(as_of as date) as as_of_date from {{ ref('int_reference_time') }}
),
daily as (
    select d.* from {{ ref('agent_daily_stats') }} as d, ref_time as r where d.event_date <= r.as_of_date
),
totals as (
    select
        agent_name, task_type, context_key, context_value,
        cast(sum(n_events) as bigint) as executions,
        cast(sum(successes) as bigint) as successes,
        cast(sum(failures) as bigint) as failures,
        cast(sum(partials) as bigint) as partials,
        cast(sum(timeouts) as bigint) as timeouts,
        sum(reward_sum) as reward_sum,
        sum(latency_sum) / nullif(sum(latency_n), 0) as latency_avg_ms,
        sum(llm_latency_sum) / nullif(sum(llm_latency_n), 0) as llm_latency_avg_ms,
        cast(sum(tokens_sum) as bigint) as tokens_total,
        sum(tokens_sum) / nullif(sum(tokens_n), 0) as tokens_avg,
        sum(cost_sum) as cost_total_usd,
        sum(cost_sum) / nullif(sum(cost_n), 0) as cost_avg_usd,
        sum(quality_sum) / nullif(sum(quality_n), 0) as quality_mean,
        min(first_event_at) as first_event_at,
        max(last_event_at) as last_event_at
    from daily
    group by all
),
ema as (
    select
        agent_name, task_type, context_key, context_value,
        sum(
            case when k_back = n_days - 1 then power(1 - a, k_back) else a * power(1 - a, k_back) end
            * successes / n_events
        ) as ema_success_rate
    from (
        select
            *,
            cast({{ var('ema_alpha', 0.3) }} as double) as a,
            row_number() over (
                partition by agent_name, task_type, context_key, context_value order by event_date desc
            ) - 1 as k_back,
            count(*) over (partition by agent_name, task_type, context_key, context_value) as n_days
        from daily
    )
    group by all
),
hist as (
    select
        agent_name, task_type, context_key, context_value, latency_bucket_ms,
        sum(sum(n)) over (
            partition by agent_name, task_type, context_key, context_value order by latency_bucket_ms
            rows between unbounded preceding and current row
        ) as cum_n,
        sum(sum(n)) over (partition by agent_name, task_type, context_key, context_value) as total_n
    from {{ ref('agent_daily_latency_hist') }} as h, ref_time as r
    where h.event_date <= r.as_of_date
    group by agent_name, task_type, context_key, context_value, latency_bucket_ms
),
quantiles as (
    select
        agent_name, task_type, context_key, context_value,
        min(latency_bucket_ms) filter (where cum_n >= 0.50 * total_n) as latency_p50_ms,
        min(latency_bucket_ms) filter (where cum_n >= 0.95 * total_n) as latency_p95_ms,
        min(latency_bucket_ms) filter (where cum_n >= 0.99 * total_n) as latency_p99_ms
    from hist
    group by all
),
errors as (
    select agent_name, task_type, context_key, context_value,
        json_group_object(error_type, n_errors) as failures_by_error_type
    from (
        select agent_name, task_type, context_key, context_value, error_type, cast(sum(n_errors) as bigint) as n_errors
        from {{ ref('agent_daily_errors') }} as x, ref_time as r
        where x.event_date <= r.as_of_date
        group by all
    )
    group by all
)
select
    'all' as window_name,
    t.*,
    cast(null as bigint) as prev_executions,
    cast(null as bigint) as prev_successes,
    cast(null as double) as prev_latency_avg_ms,
    q.latency_p50_ms,
    q.latency_p95_ms,
    q.latency_p99_ms,
    coalesce(x.failures_by_error_type, '{}') as failures_by_error_type,
    ema.ema_success_rate
from totals as t
left join quantiles as q using (agent_name, task_type, context_key, context_value)
left join errors as x using (agent_name, task_type, context_key, context_value)
left join ema using (agent_name, task_type, context_key, context_value)
