-- materialized: view
-- Each event once at the broad level (context_key = '*', context_value = '*') and once per context key
-- (var context_keys, default complexity and domain) whose value is present in the event's `context` JSON.
-- Events without a value for a key are counted at the broad level only, not in a bucket of that key.
with keys as (
    select unnest(['*'] || {{ var('context_keys', ['complexity', 'domain']) }}) as context_key
)
select *
from (
    select
        e.*,
        k.context_key,
        case when k.context_key = '*' then '*' else json_extract_string(e.context, k.context_key) end
            as context_value
    from {{ ref('stg_outcome_events') }} as e
    cross join keys as k
)
where context_value is not null
