-- materialized: table
-- Rolling windows 1h and 24h ending at T, and the window of the same length just before, from raw
-- events. Only partitions on or after var recent_from are scanned (the caller passes T's date - 2 days;
-- the default scans everything and gives the same result). Latency quantiles here are exact (quantile_cont).
with ref_time as (
    select as_of from {{ ref('int_reference_time') }}
),
windows as (
    select * from (values ('1h', interval 1 hour), ('24h', interval 24 hour))
        as w(window_name, window_length)
),
ev as (
    select
        e.*,
        w.window_name,
        e.event_time > r.as_of - w.window_length as in_current
    from {{ ref('stg_outcome_event_contexts') }} as e
    cross join ref_time as r
    join windows as w
        on e.event_time > r.as_of - 2 * w.window_length and e.event_time <= r.as_of
    where e.event_date >= cast({{ var('recent_from', '1970-01-01') }} as date)
),
errors as (
    select window_name, agent_name, task_type, context_key, context_value,
        json_group_object(error_type, n_errors) as failures_by_error_type
    from (
        select
            x.window_name, x.agent_name,
            case when grouping(x.task_type) = 1 then '*' else x.task_type end as task_type,
            x.context_key, x.context_value, x.error_type,
            count(*) as n_errors
        from (
            select * replace (
                coalesce(error_type, case when status = 'timeout' then 'timeout' else 'unknown' end) as error_type
            )
            from ev
            where in_current and status in ('failure', 'timeout')
        ) as x
        group by grouping sets (
            (x.window_name, x.agent_name, x.task_type, x.context_key, x.context_value, x.error_type),
            (x.window_name, x.agent_name, x.context_key, x.context_value, x.error_type)
        )
    )
    group by all
),
agg as (
    select
        window_name,
        agent_name,
        case when grouping(task_type) = 1 then '*' else task_type end as task_type,
        context_key,
        context_value,
        count(*) filter (where in_current) as executions,
        count(*) filter (where in_current and status = 'success') as successes,
        count(*) filter (where in_current and status = 'failure') as failures,
        count(*) filter (where in_current and status = 'partial') as partials,
        count(*) filter (where in_current and status = 'timeout') as timeouts,
        sum(reward) filter (where in_current) as reward_sum,
        avg(latency_ms) filter (where in_current) as latency_avg_ms,
        quantile_cont(latency_ms, [0.5, 0.95, 0.99]) filter (where in_current) as latency_q,
        avg(llm_latency_ms) filter (where in_current) as llm_latency_avg_ms,
        cast(coalesce(sum(tokens_used) filter (where in_current), 0) as bigint) as tokens_total,
        avg(tokens_used) filter (where in_current) as tokens_avg,
        coalesce(sum(cost_usd) filter (where in_current), 0) as cost_total_usd,
        avg(cost_usd) filter (where in_current) as cost_avg_usd,
        avg(quality_score) filter (where in_current) as quality_mean,
        min(event_time) filter (where in_current) as first_event_at,
        max(event_time) filter (where in_current) as last_event_at,
        count(*) filter (where not in_current) as prev_executions,
        count(*) filter (where not in_current and status = 'success') as prev_successes,
        avg(latency_ms) filter (where not in_current) as prev_latency_avg_ms
    from ev
    group by grouping sets (
        (window_name, agent_name, task_type, context_key, context_value),
        (window_name, agent_name, context_key, context_value)
    )
    having count(*) filter (where in_current) > 0
)
select
    agg.* exclude (latency_q),
    agg.latency_q[1] as latency_p50_ms,
    agg.latency_q[2] as latency_p95_ms,
    agg.latency_q[3] as latency_p99_ms,
    coalesce(errors.failures_by_error_type, '{}') as failures_by_error_type
from agg
left join errors using (window_name, agent_name, task_type, context_key, context_value)
