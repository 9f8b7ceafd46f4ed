-- materialized: table
-- Mergeable latency sketch: a log-spaced histogram per (event_date, agent, task_type) at the broad level
-- (context_key = '*'; task_type = '*' pools task types). Bucket b = round(ln(1 + latency_ms) * k) with
-- k = var latency_buckets_per_e (default 20), kept as its representative latency exp(b / k) - 1; quantiles
-- over several days read from the summed histogram are within about +-1 / (2k) relative (2.5% at k = 20).
-- Context buckets get no day-window quantiles (their 1h/24h quantiles are exact, from raw events).
select
    e.event_date,
    e.agent_name,
    case when grouping(e.task_type) = 1 then '*' else e.task_type end as task_type,
    '*' as context_key,
    '*' as context_value,
    e.latency_bucket_ms,
    count(*) as n
from (
    select
        event_date, agent_name, task_type,
        exp(round(ln(1 + latency_ms) * {{ var('latency_buckets_per_e', 20) }})
            / {{ var('latency_buckets_per_e', 20) }}) - 1 as latency_bucket_ms
    from {{ ref('stg_outcome_events') }}
    where latency_ms is not null
) as e
group by grouping sets (
    (e.event_date, e.agent_name, e.task_type, e.latency_bucket_ms),
    (e.event_date, e.agent_name, e.latency_bucket_ms)
)
