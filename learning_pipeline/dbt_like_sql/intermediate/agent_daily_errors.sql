-- materialized: table
-- Failures and timeouts per (event_date, agent, task_type, context bucket, error_type).
-- error_type: the event's error_type, else 'timeout' for timeouts and 'unknown' for failures.
-- The raw pass groups failed events on (event_date, hash(agent, task_type, context), status, error_type);
-- the names come back from the distinct (agent, task_type, context) triples of int_daily_by_context, whose
-- hashes must be distinct (a collision fails the run: macro keys_distinct). The roll-up to context buckets (and to task_type '*')
-- groups on small integer ids of (agent, task_type, bucket) and (agent, bucket), then attaches the names.
with triples as (
    select agent_name, task_type, context, hash(agent_name, task_type, context) as group_key
    from (select distinct agent_name, task_type, context from {{ ref('int_daily_by_context') }})
    qualify keys_distinct(count(distinct group_key) over (), count(*) over (),
        'agent_daily_errors: hash collision between (agent_name, task_type, context) triples')
),
triple_buckets as (
    select
        t.group_key, t.agent_name, t.task_type, b.context_key, b.context_value,
        dense_rank() over (order by t.agent_name, t.task_type, b.context_key, b.context_value) as task_bucket_id,
        dense_rank() over (order by t.agent_name, b.context_key, b.context_value) as agent_bucket_id
    from triples as t
    join {{ ref('int_daily_context_buckets') }} as b on t.context is not distinct from b.context
),
raw_errors as (
    select
        event_date, group_key,
        coalesce(error_type, case when status = 'timeout' then 'timeout' else 'unknown' end) as error_key,
        n_errors
    from (
        select event_date, hash(agent_name, task_type, context) as group_key, status, error_type, count(*) as n_errors
        from {{ ref('stg_outcome_events') }}
        where status in ('failure', 'timeout')
        group by all
    )
),
rolled as (
    select
        e.event_date,
        tb.task_bucket_id,
        tb.agent_bucket_id,
        grouping(tb.task_bucket_id) as all_tasks,
        e.error_key as error_type,
        sum(e.n_errors) as n_errors
    from raw_errors as e
    join triple_buckets as tb using (group_key)
    group by grouping sets (
        (e.event_date, tb.task_bucket_id, e.error_key),
        (e.event_date, tb.agent_bucket_id, e.error_key)
    )
),
task_names as (
    select distinct task_bucket_id, agent_name, task_type, context_key, context_value from triple_buckets
),
agent_names as (
    select distinct agent_bucket_id, agent_name, context_key, context_value from triple_buckets
)
select r.event_date, n.agent_name, n.task_type, n.context_key, n.context_value, r.error_type,
    cast(r.n_errors as bigint) as n_errors
from rolled as r
join task_names as n using (task_bucket_id)
where r.all_tasks = 0
union all
select r.event_date, n.agent_name, '*' as task_type, n.context_key, n.context_value, r.error_type,
    cast(r.n_errors as bigint) as n_errors
from rolled as r
join agent_names as n using (agent_bucket_id)
where r.all_tasks = 1
