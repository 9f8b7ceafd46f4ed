"""The decision service closes the loop: served decisions carry propensities that the gate reproduces, are
logged, validated as agent_decisions, joined by the outcomes that follow them, and make the next cycle use
IPS/SNIPS/DR with no client-side propensity at all."""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from learning_pipeline.defs.decisions.assets import agent_decisions
from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.bandit.policy import evaluate_candidate
from learning_pipeline.lib.events.decisions import DecisionLogger
from learning_pipeline.lib.ingest.recorder import OutcomeRecorder
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
from learning_pipeline.lib.learning.data import held_out_events
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline.service.decisions import DecisionService, NoAgents
from learning_pipeline_tests._models_fixtures import operator_makes_live, simulated_lake, sqlite_uri

TODAY = datetime.now(UTC).date()
CONFIG = CycleConfig(window_days=5, eval_days=1, n_bootstrap=100)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Five simulated days before today (no propensities), a first version registered as @champion."""
    root = tmp_path_factory.mktemp("loop")
    paths, cfg, truth = simulated_lake(
        root, days=5, events_per_day=1500, seed=5, end_date=TODAY - timedelta(days=1), pii_share=0.0
    )
    uri = sqlite_uri(root)
    result = run_cycle(paths, (TODAY - timedelta(days=1)).isoformat(), CONFIG, uri)
    assert result.registered.accepted, result.evaluation.gate.reason
    operator_makes_live(paths, uri, result.registered.version)
    return paths, cfg, truth, uri


def serve_and_record(world, n: int, seed: int = 0):
    """Simulated clients: ask for a decision, act with the first agent, record the outcome with decision_id."""
    paths, cfg, truth, uri = world
    service = DecisionService(paths, uri, logger=DecisionLogger(paths, linger_seconds=0.05), seed=seed)
    service.refresh()
    rng = np.random.default_rng(seed)
    success = truth.success_probabilities().set_index(["task_type", "complexity", "domain", "agent_name"])
    answers = []
    with OutcomeRecorder(landing_dir=paths.landing, batch_size=500, linger_seconds=0.05) as recorder:
        for _ in range(n):
            task = cfg.task_types[rng.integers(len(cfg.task_types))]
            ctx = {"complexity": rng.choice(cfg.complexities), "domain": rng.choice(cfg.domains)}
            answer = service.decide(task, ctx, top_k=3)
            agent = answer["recommendations"][0]["agent_name"]
            ok = rng.random() < success.loc[(task, ctx["complexity"], ctx["domain"], agent), "success_prob"]
            recorder.record(
                {
                    "agent_name": agent,
                    "task_type": task,
                    "status": "success" if ok else "failure",
                    "context": ctx,
                    "decision_id": answer["decision_id"],
                    "latency_ms": 100.0,
                }
            )
            answers.append((task, ctx, answer))
    service.stop()  # flushes the decision log
    assert service.logger.stats.logged == n and service.logger.stats.failed == 0
    return answers


def test_response_carries_decision_id_version_stage_and_propensities(world):
    paths, cfg, truth, uri = world
    answers = serve_and_record(world, 50)
    for _, _, answer in answers:
        assert len(answer["decision_id"]) == 32 and answer["model_version"] == 1 and answer["stage"] == "live"
        assert 1 <= len(answer["recommendations"]) <= 3
        assert all(0 < r["selection_propensity"] <= 1 for r in answer["recommendations"])
    # unknown task type: the cold-start answer, still with propensities over every agent
    service = DecisionService(paths, uri)
    service.refresh()
    cold = service.decide("never_seen_task", {"complexity": "high"}, top_k=2)
    assert cold["cold_start"] and all(0 < r["selection_propensity"] <= 1 for r in cold["recommendations"])


def test_no_model_and_no_candidates_is_a_clear_error(tmp_path):
    from learning_pipeline.lib.storage.lake import LakePaths

    service = DecisionService(LakePaths.at(tmp_path).ensure(), sqlite_uri(tmp_path))
    service.refresh()
    with pytest.raises(NoAgents, match="candidate_agents"):
        service.decide("analysis", {})
    answer = service.decide("analysis", {}, candidate_agents=["a", "b"])
    assert answer["stage"] == "cold_start" and answer["model_version"] is None
    assert [r["selection_propensity"] for r in answer["recommendations"]] == [0.5, 0.5]


def test_served_traffic_alone_makes_the_gate_use_dr_with_the_served_probabilities(world):
    paths, cfg, truth, uri = world
    answers = serve_and_record(world, 600, seed=1)
    lake = LakeResource(data_dir=str(paths.root))
    day = TODAY.isoformat()
    assert dg.materialize([outcome_events], partition_key=day, resources={"lake": lake}).success
    decided = dg.materialize([agent_decisions], partition_key=day, resources={"lake": lake})
    assert decided.success
    meta = {
        k: v.value
        for m in decided.asset_materializations_for_node("agent_decisions")
        if m.asset_key.path == ["agent_decisions"]
        for k, v in m.metadata.items()
    }
    assert meta["received"] >= 600 and meta["quarantined"] == 0

    with lake_connection(paths) as con:
        events, candidates = held_out_events(con, TODAY, TODAY, CONFIG.context_keys, CONFIG.reward_rule)
    served = events.dropna(subset=["selection_propensity"])
    assert len(served) == len(events) >= 600  # every outcome found its decision: 100 % propensities

    # the gate's own computation gives the probabilities the API served, for the same requests and version
    policy = registry.load_policy(uri, 1)
    evaluation = evaluate_candidate(
        policy, None, events, candidate_agents=candidates, n_bootstrap=50, keep_targets=True
    )
    assert evaluation.evaluation.gate_estimator == "dr"
    gate_probs = evaluation.target_probabilities["candidate"]
    universe = list(evaluation.agents)
    by_decision = {a["decision_id"]: (task, ctx, a) for task, ctx, a in answers}
    with lake_connection(paths) as con:
        logged = con.execute(
            "SELECT decision_id, agents, probabilities FROM agent_decisions WHERE served"
        ).fetchall()
    logged_by_id = {r[0]: dict(zip(r[1], r[2], strict=True)) for r in logged}
    ids = events["decision_id"].tolist()
    compared = 0
    for i, decision_id in enumerate(ids):
        if decision_id not in by_decision:
            continue  # outcomes of the first test's traffic
        for agent, p in logged_by_id[decision_id].items():
            assert gate_probs[i, universe.index(agent)] == pytest.approx(p, abs=1e-12)
        compared += 1
    assert compared == 600

    # and a full cycle over the day uses DR, with every outcome joined to its decision
    result = run_cycle(paths, day, CONFIG, uri)
    metrics = result.evaluation.metrics()
    assert result.evaluation.evaluation.gate_estimator == "dr"
    assert metrics["propensity_coverage"] == 1.0
    assert metrics["decisions.matched"] == metrics["decisions.outcomes"] >= 600
    assert metrics["decisions.unmatched"] == 0


def test_client_tracks_the_action_and_records_its_outcome_with_the_decision_id(world, tmp_path):
    from learning_pipeline.client import LoopClient
    from learning_pipeline.lib.storage.lake import LakePaths

    paths, cfg, _, uri = world
    service = DecisionService(paths, uri)
    service.refresh()
    landing = LakePaths.at(tmp_path).ensure()
    with OutcomeRecorder(landing_dir=landing.landing, batch_size=10, linger_seconds=0.05) as recorder:
        client = LoopClient(service=service, recorder=recorder)
        with client.action(cfg.task_types[0], {"complexity": "high", "domain": "legal"}) as ok:
            ok.quality, ok.cost_usd = 0.9, 0.002
        with pytest.raises(KeyError):
            with client.action(cfg.task_types[1], {"complexity": "low"}) as failed:
                raise KeyError("tool missing")
    rows = {r["decision_id"]: r for f in landing.landing.rglob("*.jsonl*") for r in _jsonl(f)}
    assert set(rows) == {ok.decision_id, failed.decision_id}
    good, bad = rows[ok.decision_id], rows[failed.decision_id]
    assert good["status"] == "success" and good["agent_name"] == ok.agent and good["quality_score"] == 0.9
    assert good["latency_ms"] >= 0 and good["metadata"]["model_version"] == 1
    assert bad["status"] == "failure" and bad["error_type"] == "KeyError"
    assert "tool missing" in bad["error_message"] and "Traceback" in bad["stack_trace"]


def _jsonl(path):
    import gzip
    import json

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_a_decision_log_that_cannot_be_written_never_fails_a_request_and_raises_an_alert(world, tmp_path):
    from learning_pipeline.lib.autonomy.alerts import AlertStore
    from learning_pipeline.lib.storage.lake import LakePaths
    from learning_pipeline.service.app import _alert_decision_log_failure

    paths, cfg, _, uri = world
    broken = LakePaths.at(tmp_path / "data").ensure()
    (broken.root / "decision_log").write_text("a file where the log directory should be")
    store = AlertStore(broken)
    logger = DecisionLogger(broken, linger_seconds=0.05, on_failure=_alert_decision_log_failure(store))
    service = DecisionService(paths, uri, logger=logger)
    service.refresh()
    answers = [service.decide(cfg.task_types[0], {"complexity": "low"}) for _ in range(5)]
    assert all(a["model_version"] == 1 for a in answers)  # every request answered
    alerts = store.list(alert_type="ERROR")
    deadline = time.monotonic() + 10
    while alerts.empty and time.monotonic() < deadline:
        time.sleep(0.1)
        alerts = store.list(alert_type="ERROR")
    assert len(alerts) == 1 and "decision log" in alerts.iloc[0]["title"]
    service.stop()
    assert logger.stats.failed == 5 and logger.stats.logged == 0  # counted, not silently dropped
