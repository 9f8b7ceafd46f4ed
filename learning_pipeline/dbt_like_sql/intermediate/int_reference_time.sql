-- materialized: table
-- The reference time T of every rolling window: var as_of, else the latest event time in the daily stats.
select
    coalesce(
        cast({{ var('as_of', none) }} as timestamptz),
        (select max(last_event_at) from {{ ref('agent_daily_stats') }})
    ) as as_of
