-- materialized: table
-- All windows (1h, 24h from raw events; 7d, all from the daily aggregates) in one long table with rates and trends; EMA as of T on every row.
with recent as (
    select r.*, a.ema_success_rate
    from {{ ref('int_agent_recent_windows') }} as r
    left join (
        select agent_name, task_type, context_key, context_value, ema_success_rate
        from {{ ref('int_agent_day_windows') }}
        where window_name = 'all'
    ) as a using (agent_name, task_type, context_key, context_value)
),
unioned as (
    select * from recent
    union all by name
    select * from {{ ref('int_agent_day_windows') }}
)
select
    u.window_name,
    u.agent_name,
    u.task_type,
    u.context_key,
    u.context_value,
    u.executions,
    u.successes,
    u.failures,
    u.partials,
    u.timeouts,
    u.failures_by_error_type,
    u.successes / u.executions as success_rate,
    u.failures / u.executions as failure_rate,
    u.partials / u.executions as partial_rate,
    u.timeouts / u.executions as timeout_rate,
    u.reward_sum / u.executions as reward_rate,
    u.latency_avg_ms,
    u.latency_p50_ms,
    u.latency_p95_ms,
    u.latency_p99_ms,
    u.llm_latency_avg_ms,
    u.tokens_total,
    u.tokens_avg,
    u.cost_total_usd,
    u.cost_avg_usd,
    u.quality_mean,
    u.ema_success_rate,
    u.prev_executions,
    u.prev_successes / nullif(u.prev_executions, 0) as prev_success_rate,
    u.successes / u.executions - u.prev_successes / nullif(u.prev_executions, 0) as success_rate_trend,
    u.latency_avg_ms - u.prev_latency_avg_ms as latency_trend_ms,
    u.first_event_at,
    u.last_event_at,
    r.as_of
from unioned as u
cross join {{ ref('int_reference_time') }} as r
