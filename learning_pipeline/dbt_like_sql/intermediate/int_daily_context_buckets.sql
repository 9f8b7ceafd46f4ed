-- materialized: view
-- The distinct context texts of the day, each once at the broad level ('*', '*') and once per context key
-- (var context_keys, default complexity and domain) whose value is present. A context without a value for
-- a key is counted at the broad level only.
with keys as (
    select unnest(['*'] || {{ var('context_keys', ['complexity', 'domain']) }}) as context_key
),
texts as (
    select distinct context from {{ ref('int_daily_by_context') }}
)
select *
from (
    select
        t.context,
        k.context_key,
        case when k.context_key = '*' then '*' else json_extract_string(t.context, k.context_key) end
            as context_value
    from texts as t
    cross join keys as k
)
where context_value is not null
