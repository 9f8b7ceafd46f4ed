-- materialized: table
-- Day-granular windows from the daily aggregates (no raw events): '7d' = the 7 UTC days ending on T's date
-- (its previous window: the 7 days before), 'all' = every day up to T's date. With an as_of inside a day,
-- that day's later events count too. Latency quantiles come from the summed log-histograms (broad level).
-- EMA of the daily success rates (var ema_alpha, default 0.3), over the days with events, oldest first:
-- ema_1 = rate_1, ema_d = alpha * rate_d + (1 - alpha) * ema_(d-1).
with ref_time as (
    select as_of, cast(as_of as date) as as_of_date from {{ ref('int_reference_time') }}
),
windows as (
    select * from (values ('7d', 7), ('all', cast(null as integer))) as w(window_name, window_days)
),
daily as (
    select d.*, w.window_name,
        w.window_days is null or d.event_date > r.as_of_date - w.window_days as in_current
    from {{ ref('agent_daily_stats') }} as d
    cross join ref_time as r
    join windows as w
        on d.event_date <= r.as_of_date
        and (w.window_days is null or d.event_date > r.as_of_date - 2 * w.window_days)
),
totals as (
    select
        window_name, agent_name, task_type, context_key, context_value,
        cast(sum(n_events) filter (where in_current) as bigint) as executions,
        cast(sum(successes) filter (where in_current) as bigint) as successes,
        cast(sum(failures) filter (where in_current) as bigint) as failures,
        cast(sum(partials) filter (where in_current) as bigint) as partials,
        cast(sum(timeouts) filter (where in_current) as bigint) as timeouts,
        sum(reward_sum) filter (where in_current) as reward_sum,
        sum(latency_sum) filter (where in_current) / nullif(sum(latency_n) filter (where in_current), 0) as latency_avg_ms,
        sum(llm_latency_sum) filter (where in_current)
            / nullif(sum(llm_latency_n) filter (where in_current), 0) as llm_latency_avg_ms,
        cast(coalesce(sum(tokens_sum) filter (where in_current), 0) as bigint) as tokens_total,
        sum(tokens_sum) filter (where in_current) / nullif(sum(tokens_n) filter (where in_current), 0) as tokens_avg,
        coalesce(sum(cost_sum) filter (where in_current), 0) as cost_total_usd,
        sum(cost_sum) filter (where in_current) / nullif(sum(cost_n) filter (where in_current), 0) as cost_avg_usd,
        sum(quality_sum) filter (where in_current) / nullif(sum(quality_n) filter (where in_current), 0) as quality_mean,
        min(first_event_at) filter (where in_current) as first_event_at,
        max(last_event_at) filter (where in_current) as last_event_at,
        case when window_name = 'all' then null
            else cast(coalesce(sum(n_events) filter (where not in_current), 0) as bigint) end as prev_executions,
        case when window_name = 'all' then null
            else cast(coalesce(sum(successes) filter (where not in_current), 0) as bigint) end as prev_successes,
        sum(latency_sum) filter (where not in_current)
            / nullif(sum(latency_n) filter (where not in_current), 0) as prev_latency_avg_ms
    from daily
    group by window_name, agent_name, task_type, context_key, context_value
    having sum(n_events) filter (where in_current) > 0
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
        where window_name = 'all'
    )
    group by all
),
hist as (
    select
        w.window_name, h.agent_name, h.task_type, h.context_key, h.context_value, h.latency_bucket_ms,
        sum(sum(h.n)) over (
            partition by w.window_name, h.agent_name, h.task_type, h.context_key, h.context_value
            order by h.latency_bucket_ms rows between unbounded preceding and current row
        ) as cum_n,
        sum(sum(h.n)) over (
            partition by w.window_name, h.agent_name, h.task_type, h.context_key, h.context_value
        ) as total_n
    from {{ ref('agent_daily_latency_hist') }} as h
    cross join ref_time as r
    join windows as w
        on h.event_date <= r.as_of_date and (w.window_days is null or h.event_date > r.as_of_date - w.window_days)
    group by w.window_name, h.agent_name, h.task_type, h.context_key, h.context_value, h.latency_bucket_ms
),
quantiles as (
    select
        window_name, agent_name, task_type, context_key, context_value,
        min(latency_bucket_ms) filter (where cum_n >= 0.50 * total_n) as latency_p50_ms,
        min(latency_bucket_ms) filter (where cum_n >= 0.95 * total_n) as latency_p95_ms,
        min(latency_bucket_ms) filter (where cum_n >= 0.99 * total_n) as latency_p99_ms
    from hist
    group by all
),
errors as (
    select window_name, agent_name, task_type, context_key, context_value,
        json_group_object(error_type, n_errors) as failures_by_error_type
    from (
        select w.window_name, x.agent_name, x.task_type, x.context_key, x.context_value, x.error_type,
            cast(sum(x.n_errors) as bigint) as n_errors
        from {{ ref('agent_daily_errors') }} as x
        cross join ref_time as r
        join windows as w
            on x.event_date <= r.as_of_date and (w.window_days is null or x.event_date > r.as_of_date - w.window_days)
        group by all
    )
    group by all
)
select
    t.*,
    q.latency_p50_ms,
    q.latency_p95_ms,
    q.latency_p99_ms,
    coalesce(x.failures_by_error_type, '{}') as failures_by_error_type,
    ema.ema_success_rate
from totals as t
left join quantiles as q using (window_name, agent_name, task_type, context_key, context_value)
left join errors as x using (window_name, agent_name, task_type, context_key, context_value)
left join ema using (agent_name, task_type, context_key, context_value)
