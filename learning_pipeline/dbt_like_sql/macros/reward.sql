-- reward(status, quality_score, cost_usd, latency_ms, task_type, rule, task_types, cost_weights, latency_weights):
-- the bandit's reward of one outcome, the one home of the rule (staging, the learning cycle, OPE, routing pairs
-- and the decision service all run it):
--   reward_base - cost_penalty - latency_penalty, clipped to [0, 1] so Beta posteriors stay valid.
-- reward_base: success 1, failure/timeout 0, partial its quality_score (0.5 when missing) under rule 'graded',
--   0 under rule 'success'.
-- cost_penalty = cost weight x cost_usd; latency_penalty = latency weight x latency in seconds; a missing cost
--   or latency costs nothing. The weights of a task type are the entries of cost_weights / latency_weights at
--   its position in task_types (parallel lists); a task type not listed takes the '*' row, else 0. With zero
--   weights the reward is exactly reward_base.
create or replace macro reward_base(status, quality_score, rule) as
    case
        when status = 'success' then 1.0
        when status = 'partial' and rule = 'graded' then coalesce(quality_score, 0.5)
        else 0.0
    end::DOUBLE;
create or replace macro reward_weight(task_type, task_types, weights) as
    coalesce(
        list_extract(weights::DOUBLE[], list_position(task_types, task_type)),
        list_extract(weights::DOUBLE[], list_position(task_types, '*')),
        0.0
    );
create or replace macro cost_penalty(cost_usd, task_type, task_types, cost_weights) as
    reward_weight(task_type, task_types, cost_weights) * coalesce(cost_usd, 0.0);
create or replace macro latency_penalty(latency_ms, task_type, task_types, latency_weights) as
    reward_weight(task_type, task_types, latency_weights) * coalesce(latency_ms, 0.0) / 1000.0;
create or replace macro reward(
    status, quality_score, cost_usd, latency_ms, task_type, rule, task_types, cost_weights, latency_weights
) as
    greatest(0.0, least(1.0,
        reward_base(status, quality_score, rule)
        - cost_penalty(cost_usd, task_type, task_types, cost_weights)
        - latency_penalty(latency_ms, task_type, task_types, latency_weights)
    ));
