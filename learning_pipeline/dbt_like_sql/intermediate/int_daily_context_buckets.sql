-- materialized: view
-- The distinct context texts of the day, each once at the broad level ('*', '*') and once per context key
-- (var context_keys, default complexity and domain) whose value is present. A context without a value for
-- a key is counted at the broad level only (macro context_buckets).
select
    context,
    unnest(context_buckets(context, {{ var('context_keys', ['complexity', 'domain']) }}), recursive := true)
from (select distinct context from {{ ref('int_daily_by_context') }})
