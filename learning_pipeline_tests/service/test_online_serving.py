"""A live version that learns online: outcomes posted to the decision service change the next epoch's
decisions, and the gate's replay of the day reproduces every served probability."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from learning_pipeline.defs.decisions.assets import agent_decisions
from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.defs.models.assets import candidate_policy, model_versions, policy_evaluation
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.bandit import online
from learning_pipeline.lib.bandit.policy import evaluate_candidate
from learning_pipeline.lib.events.decisions import DecisionLogger
from learning_pipeline.lib.ingest.recorder import OutcomeRecorder
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.cycle import CycleConfig
from learning_pipeline.lib.learning.data import held_out_events
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline.service.decisions import DecisionService
from learning_pipeline_tests._models_fixtures import models_lake, operator_makes_live

TODAY = datetime.now(UTC).date()
EPOCH = 0.2
CONFIG = CycleConfig(window_days=5, eval_days=1, online_epoch_seconds=EPOCH)  # what held_out_events reads
MODEL_ASSETS = [candidate_policy, policy_evaluation, model_versions]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Five simulated days; the models assets (run config `online_epoch_seconds`) register version 1, live."""
    paths, resources, truth = models_lake(
        tmp_path_factory.mktemp("online") / "data",
        days=5,
        events_per_day=1500,
        seed=7,
        end_date=TODAY - timedelta(days=1),
        pii_share=0.0,
    )
    run_config = {
        "ops": {
            "candidate_policy": {"config": {"window_days": 5, "online_epoch_seconds": EPOCH}},
            "policy_evaluation": {"config": {"n_bootstrap": 100}},
        }
    }
    day = (TODAY - timedelta(days=1)).isoformat()
    assert dg.materialize(MODEL_ASSETS, partition_key=day, resources=resources, run_config=run_config).success
    uri = resources["mlflow"].uri
    operator_makes_live(paths, uri, 1)
    return paths, truth.config, uri, 1


def test_an_outcome_reaches_the_next_epochs_decisions(world):
    paths, cfg, uri, version = world
    service = DecisionService(paths, uri, seed=0)
    service.refresh()
    task, ctx = cfg.task_types[0], {"complexity": "high", "domain": cfg.domains[0]}
    before = service.decide(task, ctx, top_k=len(cfg.agents))
    assert service.roster["live"].policy.online_epoch_seconds == EPOCH
    loser = before["recommendations"][-1]["agent_name"]
    now = datetime.now(UTC)
    outcomes = [
        {
            "agent_name": loser,
            "task_type": task,
            "status": "success",
            "context": ctx,
            "timestamp": now.isoformat(),
        }
        for _ in range(200)
    ]
    assert service.observe(outcomes) == 200
    same_epoch = service.decide(task, ctx, top_k=len(cfg.agents), at=now)
    time.sleep(EPOCH * 1.5)
    after = service.decide(task, ctx, top_k=len(cfg.agents))

    def propensity(answer):
        return {r["agent_name"]: r["selection_propensity"] for r in answer["recommendations"]}[loser]

    assert propensity(same_epoch) == pytest.approx(propensity(before))  # not before its epoch has passed
    assert propensity(after) > 0.5 > propensity(before)  # 200 successes make the worst agent the favourite
    assert service.info()["roster"][0]["online_outcomes_folded"] == 200
    # events the service cannot use are left to the pipeline's validation, never an error here
    assert service.observe([{"task_type": task}, {"agent_name": loser}]) == 0


def test_the_gate_replays_the_served_online_policy_exactly(world):
    paths, cfg, uri, version = world
    service = DecisionService(paths, uri, logger=DecisionLogger(paths, linger_seconds=0.05), seed=3)
    service.refresh()
    rng = np.random.default_rng(3)
    served = {}
    with OutcomeRecorder(landing_dir=paths.landing, batch_size=200, linger_seconds=0.05) as recorder:
        for i in range(300):
            task = cfg.task_types[rng.integers(len(cfg.task_types))]
            ctx = {"complexity": str(rng.choice(cfg.complexities)), "domain": str(rng.choice(cfg.domains))}
            answer = service.decide(task, ctx, top_k=3)
            agent = answer["recommendations"][0]["agent_name"]
            event = {
                "agent_name": agent,
                "task_type": task,
                "status": "success" if rng.random() < 0.5 else "failure",
                "context": ctx,
                "decision_id": answer["decision_id"],
                "timestamp": datetime.now(UTC).isoformat(),
                "latency_ms": 10.0,
            }
            recorder.record(event)
            service.observe([event])
            served[answer["decision_id"]] = answer
            if i % 50 == 49:
                time.sleep(EPOCH)  # let epochs pass so later decisions carry evidence
    service.stop()
    assert service.info()["roster"][0]["online_outcomes_folded"] > 0

    lake = LakeResource(data_dir=str(paths.root))
    day = TODAY.isoformat()
    assert dg.materialize([outcome_events], partition_key=day, resources={"lake": lake}).success
    assert dg.materialize([agent_decisions], partition_key=day, resources={"lake": lake}).success
    with lake_connection(paths) as con:
        events, candidates = held_out_events(con, TODAY, TODAY, CONFIG.context_keys, CONFIG.reward_rule)
        logged = con.execute("SELECT decision_id, agents, probabilities FROM agent_decisions WHERE served")
        logged_by_id = {r[0]: dict(zip(r[1], r[2], strict=True)) for r in logged.fetchall()}
    policy = registry.load_policy(uri, version)
    evaluation = evaluate_candidate(
        policy, None, events, candidate_agents=candidates, n_bootstrap=50, keep_targets=True
    )
    replayed, universe = evaluation.target_probabilities["candidate"], list(evaluation.agents)
    compared = 0
    for i, decision_id in enumerate(events["decision_id"]):
        if decision_id in served:
            for agent, p in logged_by_id[decision_id].items():
                assert replayed[i, universe.index(agent)] == pytest.approx(p, abs=1e-12)
            compared += 1
    assert compared == 300
    static = registry.load_policy(uri, version)
    static.params[online.PARAM] = 0.0  # the same version, frozen
    frozen = evaluate_candidate(
        static, None, events, candidate_agents=candidates, n_bootstrap=50, keep_targets=True
    )
    assert np.abs(frozen.target_probabilities["candidate"] - replayed).max() > 0.01  # evidence moved them
