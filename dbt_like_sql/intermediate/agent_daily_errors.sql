-- materialized: table
-- Failures and timeouts per (event_date, agent, task_type, context bucket, error_type).
-- error_type: the event's error_type, else 'timeout' for timeouts and 'unknown' for failures.
with by_context as (
    select
        event_date, agent_name, task_type, context,
        coalesce(error_type, case when status = 'timeout' then 'timeout' else 'unknown' end) as error_type,
        count(*) as n_errors
    from {{ ref('stg_outcome_events') }}
    where status in ('failure', 'timeout')
    group by all
)
select
    e.event_date,
    e.agent_name,
    case when grouping(e.task_type) = 1 then '*' else e.task_type end as task_type,
    b.context_key,
    b.context_value,
    e.error_type,
    cast(sum(e.n_errors) as bigint) as n_errors
from by_context as e
join {{ ref('int_daily_context_buckets') }} as b on e.context is not distinct from b.context
group by grouping sets (
    (e.event_date, e.agent_name, e.task_type, b.context_key, b.context_value, e.error_type),
    (e.event_date, e.agent_name, b.context_key, b.context_value, e.error_type)
)
