-- materialized: table
-- Mergeable latency sketch: a log-spaced histogram per (event_date, agent, task_type) at the broad level
-- (context_key = '*'; task_type = '*' pools task types). Bucket b = round(ln(1 + latency_ms) * k) with
-- k = var latency_buckets_per_e (default 20), kept as its representative latency exp(b / k) - 1; quantiles
-- over several days read from the summed histogram are within about +-1 / (2k) relative (2.5% at k = 20).
-- Context buckets get no day-window quantiles (their 1h/24h quantiles are exact, from raw events).
-- The raw pass groups on (event_date, hash(agent, task_type), b); names come back from the day's
-- (agent, task_type) pairs, whose hashes must be distinct (a collision fails the run: macro keys_distinct). The '*' rows are
-- summed from the task-level histogram, not from raw events.
with pairs as (
    select agent_name, task_type, hash(agent_name, task_type) as pair_key
    from (select distinct agent_name, task_type from {{ ref('int_daily_by_context') }})
    qualify keys_distinct(count(distinct pair_key) over (), count(*) over (),
        'agent_daily_latency_hist: hash collision between (agent_name, task_type) pairs')
),
raw_hist as (
    select
        event_date,
        hash(agent_name, task_type) as pair_key,
        round(ln(1 + latency_ms) * {{ var('latency_buckets_per_e', 20) }}) as bucket,
        count(*) as n
    from {{ ref('stg_outcome_events') }}
    where latency_ms is not null
    group by all
)
select
    h.event_date,
    p.agent_name,
    case when grouping(p.task_type) = 1 then '*' else p.task_type end as task_type,
    '*' as context_key,
    '*' as context_value,
    exp(h.bucket / {{ var('latency_buckets_per_e', 20) }}) - 1 as latency_bucket_ms,
    cast(sum(h.n) as bigint) as n
from raw_hist as h
join pairs as p using (pair_key)
group by grouping sets (
    (h.event_date, p.agent_name, p.task_type, h.bucket),
    (h.event_date, p.agent_name, h.bucket)
)
