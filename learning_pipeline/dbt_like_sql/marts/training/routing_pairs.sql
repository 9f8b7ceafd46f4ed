-- materialized: table
-- Routing evidence: for every task class, every candidate (agent, model) with its stats, ranked.
-- A task class is (task_type, complexity); complexity = '*' pools all events of the task type, and an
-- event without context.complexity is counted under '*' only.
-- Rank: candidates with at least var routing_min_samples executions first, then the mean reward (the bandit's
-- rule, macro `reward`: with cost or latency weights a cheaper candidate can outrank a more successful one),
-- success rate, quality mean (NULLs last), executions, agent_name, model. Cost is reported beside it. The best candidate is rank 1 when it is eligible;
-- a class without an eligible candidate has no best (best_agent NULL).
with stats as (
    select
        task_type,
        case when grouping(complexity) = 1 then '*' else complexity end as complexity,
        agent_name,
        model,
        count(*) as executions,
        count(*) filter (where status = 'success') as successes,
        count(*) filter (where status = 'failure') as failures,
        count(*) filter (where status = 'partial') as partials,
        count(*) filter (where status = 'timeout') as timeouts,
        count(*) filter (where status = 'success') / count(*) as success_rate,
        avg(reward) as reward_mean,
        avg(cost_penalty) as cost_penalty_mean,
        avg(latency_penalty) as latency_penalty_mean,
        count(quality_score) as quality_n,
        avg(quality_score) as quality_mean,
        quantile_cont(latency_ms, 0.5) as latency_p50_ms,
        avg(cost_usd) as cost_mean_usd,
        coalesce(sum(cost_usd), 0) as cost_total_usd,
        avg(tokens_used) as tokens_mean,
        min(event_time) as first_event_at,
        max(event_time) as last_event_at
    from {{ ref('training_events') }}
    group by grouping sets ((task_type, agent_name, model), (task_type, complexity, agent_name, model))
),
filtered as (
    -- the per-complexity grouping set must not create a bucket for events without a complexity
    select * from stats where complexity is not null
),
ranked as (
    select
        *,
        executions >= {{ var('routing_min_samples', 20) }} as eligible,
        row_number() over (
            partition by task_type, complexity
            order by executions >= {{ var('routing_min_samples', 20) }} desc, reward_mean desc, success_rate desc,
                     quality_mean desc nulls last, executions desc, agent_name, model
        ) as rank
    from filtered
)
select
    task_type,
    complexity,
    agent_name,
    model,
    executions,
    successes,
    failures,
    partials,
    timeouts,
    success_rate,
    reward_mean,
    cost_penalty_mean,
    latency_penalty_mean,
    quality_n,
    quality_mean,
    latency_p50_ms,
    cost_mean_usd,
    cost_total_usd,
    tokens_mean,
    eligible,
    rank,
    eligible and rank = 1 as is_best,
    max(case when eligible and rank = 1 then agent_name end) over (partition by task_type, complexity)
        as best_agent,
    max(case when eligible and rank = 1 then model end) over (partition by task_type, complexity)
        as best_model,
    count(*) over (partition by task_type, complexity) as candidates,
    first_event_at,
    last_event_at
from ranked
order by task_type, complexity, rank
