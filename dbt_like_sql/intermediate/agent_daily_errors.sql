-- materialized: table
-- Failures and timeouts per (event_date, agent, task_type, context bucket, error_type).
-- error_type: the event's error_type, else 'timeout' for timeouts and 'unknown' for failures.
select
    e.event_date,
    e.agent_name,
    case when grouping(e.task_type) = 1 then '*' else e.task_type end as task_type,
    e.context_key,
    e.context_value,
    e.error_type,
    count(*) as n_errors
from (
    select * replace (
        coalesce(error_type, case when status = 'timeout' then 'timeout' else 'unknown' end) as error_type
    )
    from {{ ref('stg_outcome_event_contexts') }}
    where status in ('failure', 'timeout')
) as e
group by grouping sets (
    (e.event_date, e.agent_name, e.task_type, e.context_key, e.context_value, e.error_type),
    (e.event_date, e.agent_name, e.context_key, e.context_value, e.error_type)
)
