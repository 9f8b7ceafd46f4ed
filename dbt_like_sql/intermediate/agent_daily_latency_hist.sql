-- materialized: table
-- Mergeable latency sketch: a log-spaced histogram per (event_date, agent, task_type, context bucket).
-- Bucket b = round(ln(1 + latency_ms) * k) with k = var latency_buckets_per_e (default 20), kept as its
-- representative latency exp(b / k) - 1; quantiles over many days read from the summed histogram are
-- within about +-1 / (2k) relative error (2.5% at k = 20).
select
    e.event_date,
    e.agent_name,
    case when grouping(e.task_type) = 1 then '*' else e.task_type end as task_type,
    e.context_key,
    e.context_value,
    e.latency_bucket_ms,
    count(*) as n
from (
    select
        *,
        exp(round(ln(1 + latency_ms) * {{ var('latency_buckets_per_e', 20) }})
            / {{ var('latency_buckets_per_e', 20) }}) - 1 as latency_bucket_ms
    from {{ ref('stg_outcome_event_contexts') }}
    where latency_ms is not null
) as e
group by grouping sets (
    (e.event_date, e.agent_name, e.task_type, e.context_key, e.context_value, e.latency_bucket_ms),
    (e.event_date, e.agent_name, e.context_key, e.context_value, e.latency_bucket_ms)
)
