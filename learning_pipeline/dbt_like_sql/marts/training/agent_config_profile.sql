-- materialized: view
-- One row per agent: outcome counts and the distribution of turns over successful runs.
-- turns = metadata.turns, else metadata.num_turns, else retry_count + 1 (one attempt plus retries).
with runs as (
    select
        agent_name,
        status,
        quality_score,
        coalesce(
            try_cast(json_extract_string(metadata, '$.turns') as integer),
            try_cast(json_extract_string(metadata, '$.num_turns') as integer),
            retry_count + 1
        ) as turns,
        case
            when try_cast(json_extract_string(metadata, '$.turns') as integer) is not null then 'metadata.turns'
            when try_cast(json_extract_string(metadata, '$.num_turns') as integer) is not null
                then 'metadata.num_turns'
            when retry_count is not null then 'retry_count'
        end as turns_source
    from {{ ref('training_events') }}
)
select
    agent_name,
    count(*) as executions,
    count(*) filter (where status = 'success') as successes,
    count(*) filter (where status = 'success') / count(*) as success_rate,
    avg(quality_score) as quality_mean,
    count(turns) filter (where status = 'success') as turns_n,
    quantile_cont(turns, 0.5) filter (where status = 'success') as turns_p50,
    quantile_cont(turns, 0.95) filter (where status = 'success') as turns_p95,
    max(turns) filter (where status = 'success') as turns_max,
    mode(turns_source) filter (where status = 'success') as turns_source
from runs
group by agent_name
