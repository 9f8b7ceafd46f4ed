import json
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learning_pipeline.lib.events.schema import FIELD_NAMES, OUTCOME_EVENT_SCHEMA, REQUIRED_FIELDS, STATUSES
from learning_pipeline.lib.simulation import (
    BAD_RECORD_KINDS,
    DEFAULT_TASK_TYPES,
    OVERSIZED_KIND,
    SEED_EXAMPLE_EVENTS,
    SimulationConfig,
    SimulationTruth,
    generate_table,
    load_truth,
    write_lake,
    write_simulation,
)
from learning_pipeline.lib.storage.lake import LakePaths

END = "2025-06-30"


def _lines(result):
    return [line for path in result.files for line in path.read_text().splitlines()]


def test_same_seed_same_events_other_seed_other_events():
    cfg = dict(days=2, events_per_day=300, end_date=END)
    a = generate_table(SimulationConfig(seed=3, **cfg))
    b = generate_table(SimulationConfig(seed=3, **cfg))
    c = generate_table(SimulationConfig(seed=4, **cfg))
    assert a.equals(b)
    assert not a.column("event_id").equals(c.column("event_id"))


def test_table_has_event_schema_counts_and_dates():
    cfg = SimulationConfig(days=3, events_per_day=200, seed=1, end_date=END)
    table = generate_table(cfg)
    assert table.num_rows == 600
    assert table.schema.names == [n for n in OUTCOME_EVENT_SCHEMA.names if n in FIELD_NAMES]
    days = {ts.date() for ts in table.column("timestamp").to_pylist()}
    assert days == {date(2025, 6, 28), date(2025, 6, 29), date(2025, 6, 30)}
    frame = table.to_pandas()
    assert set(frame["status"]) <= set(STATUSES)
    assert frame["event_id"].is_unique
    assert (frame["llm_latency_ms"] < frame["latency_ms"]).all()
    assert (frame["latency_ms"] <= frame["duration_ms"]).all()
    assert (frame["start_time"] < frame["end_time"]).all() and (frame["end_time"] == frame["timestamp"]).all()
    assert frame["quality_score"].between(0, 1).all()
    ok = frame["status"].isin(["success", "partial"])
    assert frame.loc[ok, "output"].notna().all() and frame.loc[~ok, "error_type"].notna().all()
    assert (frame.loc[frame["status"] == "timeout", "error_type"] == "TimeoutError").all()
    assert frame.groupby("status")["quality_score"].mean()["success"] > 0.6
    assert set(frame.loc[frame.status == "success", "severity"]) == {"info"}
    assert set(frame.loc[frame.status == "failure", "severity"]) <= {"error", "critical"}
    assert frame["selection_propensity"].isna().all()
    ctx = json.loads(frame["context"].iloc[0])
    assert set(ctx) == {"complexity", "domain"}
    assert set(json.loads(frame["metadata"].iloc[0])) == {"model", "provider"}
    texts = " ".join(frame["input"]) + " ".join(frame["output"].dropna())
    assert "@example.com" in texts and "+1-555-" in texts  # some PII for redaction tests


def test_lineage_table_matches_lake_schema():
    table = generate_table(SimulationConfig(days=1, events_per_day=50, end_date=END), lineage=True)
    assert table.schema.equals(OUTCOME_EVENT_SCHEMA)


def test_truth_best_agent_is_empirically_best():
    cfg = SimulationConfig(days=1, events_per_day=30_000, seed=11, end_date=END)
    truth = SimulationTruth(cfg)
    frame = generate_table(cfg).select(["task_type", "agent_name", "status"]).to_pandas()
    frame["success"] = frame["status"] == "success"
    rates = frame.groupby(["task_type", "agent_name"])["success"].mean()
    expected = truth.task_success_rates().set_index(["task_type", "agent_name"])["success_rate"]
    assert np.abs(rates - expected.loc[rates.index]).max() < 0.07
    empirical_best = rates.groupby(level=0).idxmax().map(lambda ix: ix[1]).to_dict()
    assert empirical_best == truth.best_agents()
    gaps = truth.best_agents_by_day()["gap"]
    assert gaps.min() > 0.15  # well separated
    assert len(set(truth.best_agents().values())) > 1


def test_truth_tables_and_policy_values():
    cfg = SimulationConfig(days=10, events_per_day=10, end_date=END, switch_day=6)
    truth = SimulationTruth(cfg)
    probs = truth.success_probabilities(day=0)
    assert len(probs) == 6 * 8 * 3 * 4 and probs["success_prob"].between(0, 1).all()
    by_day = truth.best_agents_by_day()
    before, after = truth.best_agents(5), truth.best_agents(6)
    changed = {t for t in cfg.task_types if before[t] != after[t]}
    assert changed == set(truth.switch_task_types) and changed
    assert by_day.loc[by_day.day_index == 9].set_index("task_type")["best_agent"].to_dict() == after
    assert truth.best_agents("2025-06-26") == before  # day 5 by date
    uniform = {t: {a: 1 for a in cfg.agents} for t in cfg.task_types}
    v_uniform = truth.policy_value(uniform, day=0)
    v_best = truth.policy_value(before, day=0)
    assert v_uniform < v_best <= truth.oracle_value(day=0) + 1e-12
    assert truth.policy_value(before, day=9) < v_best  # the old routing got worse after the switch
    callable_value = truth.policy_value(lambda task, ctx: before[task], day=0)
    frame_value = truth.policy_value(
        __import__("pandas").DataFrame({"task_type": list(before), "agent_name": list(before.values())}),
        day=0,
    )
    assert callable_value == pytest.approx(v_best) and frame_value == pytest.approx(v_best)
    with pytest.raises(ValueError):
        truth.policy_value({"analysis": "no_such_agent"})


def test_switch_changes_the_events():
    cfg = SimulationConfig(days=2, events_per_day=24_000, end_date=END, switch_day=1, seed=5)
    truth = SimulationTruth(cfg)
    frame = generate_table(cfg).select(["task_type", "agent_name", "status", "timestamp"]).to_pandas()
    frame["success"] = frame["status"] == "success"
    frame["day"] = frame["timestamp"].dt.date
    task = truth.switch_task_types[0]
    rates = frame[frame.task_type == task].groupby(["day", "agent_name"])["success"].mean()
    assert rates.loc[date(2025, 6, 29)].idxmax() == truth.best_agents(0)[task]
    assert rates.loc[date(2025, 6, 30)].idxmax() == truth.best_agents(1)[task]


def test_propensities_follow_the_logging_policy():
    cfg = SimulationConfig(days=1, events_per_day=2000, end_date=END, propensities=True)
    truth = SimulationTruth(cfg)
    frame = generate_table(cfg).to_pandas()
    assert frame["selection_propensity"].between(0, 1, inclusive="right").all()
    assert all(list(c) == list(cfg.agents) for c in frame["candidate_agents"])
    t = frame["task_type"].map(cfg.task_types.index).to_numpy()
    a = frame["agent_name"].map(cfg.agents.index).to_numpy()
    assert np.allclose(frame["selection_propensity"], truth.logging_policy[t, a], atol=1e-6)
    assert truth.logging_policy_value() < truth.oracle_value()
    soft = SimulationTruth(
        SimulationConfig(days=1, end_date=END, propensities=True, logging_policy="softmax")
    )
    assert np.allclose(soft.logging_policy.sum(axis=1), 1) and (soft.logging_policy > 0).all()


def test_write_simulation_files_bad_records_duplicates_and_truth(tmp_path):
    cfg = SimulationConfig(
        days=2,
        events_per_day=1000,
        seed=2,
        end_date=END,
        malformed_share=0.05,
        duplicate_share=0.02,
        file_events=700,
        propensities=True,
    )
    result = write_simulation(cfg, tmp_path)
    landing = LakePaths.at(tmp_path).landing
    assert sorted(p.name for p in landing.iterdir()) == sorted(p.name for p in result.files)  # no temp files
    assert all(p.suffix == ".jsonl" and not p.name.startswith(".") for p in result.files)
    lines = _lines(result)
    assert [len(p.read_text().splitlines()) for p in result.files][:-1] == [700] * (len(result.files) - 1)
    assert result.events == 2000 and result.duplicates == 40
    assert result.bad_total == 100  # 5 % of the events
    assert set(result.bad_records) == set(BAD_RECORD_KINDS) | {OVERSIZED_KIND}
    assert result.bad_records[OVERSIZED_KIND] == 1
    assert len(lines) == result.lines == 2000 + 40 + 100

    bad = [line for line in lines if line.startswith('{"event_id":"bad-')]
    assert len(bad) == 100
    kinds = Counter(line.split('"event_id":"bad-')[1].split("-")[0] for line in bad)
    assert dict(kinds) == result.bad_records
    assert sum(len(line.encode()) > 1024 * 1024 for line in lines) == 1
    parsed, broken = [], 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            broken += 1
    assert broken == result.bad_records["malformed_json"]
    good = [e for e in parsed if not e["event_id"].startswith("bad-")]
    ids = Counter(e["event_id"] for e in good)
    assert len(ids) == 2000 and sum(c - 1 for c in ids.values()) == 40
    by_kind = {e["event_id"].split("-")[1]: e for e in parsed if e["event_id"].startswith("bad-")}
    assert "agent_name" not in by_kind["missing_required_field"]
    assert isinstance(by_kind["wrong_type"]["duration_ms"], str)
    assert by_kind["out_of_range"]["quality_score"] > 1
    assert by_kind["unknown_status"]["status"] not in STATUSES
    assert by_kind["future_timestamp"]["timestamp"] > "2030"
    event = good[0]
    assert (
        event["timestamp"].endswith("Z") and "selection_propensity" in event and "candidate_agents" in event
    )
    assert ("output" in event) == (event["status"] in ("success", "partial"))

    truth = load_truth(tmp_path)
    assert result.truth_path == tmp_path.resolve() / "simulation" / "truth.json"
    assert truth["end_date"] == END and len(truth["best_agents_by_day"]) == 2 * 8
    assert truth["logging_policy"] is not None


def test_file_size_does_not_change_the_stream(tmp_path):
    cfg = dict(days=1, events_per_day=500, seed=9, end_date=END, malformed_share=0.02, duplicate_share=0.02)
    a = _lines(write_simulation(SimulationConfig(file_events=100, **cfg), tmp_path / "a"))
    b = _lines(write_simulation(SimulationConfig(file_events=10_000, **cfg), tmp_path / "b"))
    assert a == b


def test_events_stop_at_now_and_future_end_date_is_rejected():
    with pytest.raises(ValueError):
        SimulationConfig(end_date=date.today() + timedelta(days=5))
    table = generate_table(SimulationConfig(days=1, events_per_day=200))
    now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    assert max(table.column("timestamp").to_pylist()) <= now


def test_seed_examples_are_valid_events():
    assert len(SEED_EXAMPLE_EVENTS) == 2
    for event in SEED_EXAMPLE_EVENTS:
        assert set(event) <= set(FIELD_NAMES)
        assert all(event.get(f) for f in REQUIRED_FIELDS)
        assert event["status"] in STATUSES
    assert SEED_EXAMPLE_EVENTS[0]["status"] == "success" and SEED_EXAMPLE_EVENTS[1]["status"] == "failure"


def test_numbered_agents_and_task_types_with_a_gap():
    cfg = SimulationConfig(days=1, events_per_day=10, end_date=END, agents=4, task_types=40, gap=0.15)
    assert cfg.agents == ("agent_00", "agent_01", "agent_02", "agent_03")
    assert len(cfg.task_types) == 40 and cfg.task_types[:2] == ("task_000", "task_001")
    rates = SimulationTruth(cfg).task_success_rates()
    top2 = np.sort(rates.pivot(index="task_type", columns="agent_name", values="success_rate").to_numpy())[
        :, -2:
    ]
    lead = top2[:, 1] - top2[:, 0]  # context-averaged: near the gap, never far from it
    assert abs(np.median(lead) - 0.15) < 0.03 and lead.min() > 0.1
    with pytest.raises(ValueError):
        SimulationConfig(end_date=END, gap=1.5)


def test_switch_of_every_task_type():
    cfg = SimulationConfig(days=4, events_per_day=10, end_date=END, switch_day=2, switch_task_types="all")
    truth = SimulationTruth(cfg)
    assert truth.switch_task_types == cfg.task_types
    before, after = truth.best_agents(1), truth.best_agents(2)
    assert all(before[t] != after[t] for t in cfg.task_types)


def test_events_without_task_type_or_quality():
    cfg = dict(days=1, events_per_day=4000, end_date=END, seed=3)
    frame = generate_table(
        SimulationConfig(missing_task_type_share=0.1, missing_quality_share=0.05, **cfg)
    ).to_pandas()
    no_task = frame["task_type"].isna()
    assert 0.08 < no_task.mean() < 0.12 and 0.035 < frame["quality_score"].isna().mean() < 0.065
    # An event without task_type names its task in action_type (the pipeline's fallback finds it there).
    assert set(frame.loc[no_task, "action_type"]) <= set(DEFAULT_TASK_TYPES)
    assert not frame.loc[~no_task, "action_type"].isin(DEFAULT_TASK_TYPES).any()
    # The shares are drawn last: everything else is the stream of the same seed without missing fields.
    plain = generate_table(SimulationConfig(**cfg)).to_pandas()
    assert frame["event_id"].equals(plain["event_id"]) and frame["status"].equals(plain["status"])
    assert frame.loc[~no_task, "task_type"].equals(plain.loc[~no_task, "task_type"])


def test_write_lake_partitions_are_the_lineage_table(tmp_path):
    cfg = SimulationConfig(days=3, events_per_day=300, seed=2, end_date=END)
    files = write_lake(cfg, tmp_path)
    assert [f.relative_to(LakePaths.at(tmp_path).lake).parent.as_posix() for f in files] == [
        "outcome_events/event_date=2025-06-28",
        "outcome_events/event_date=2025-06-29",
        "outcome_events/event_date=2025-06-30",
    ]
    written = pa.concat_tables(pq.ParquetFile(f).read() for f in files)
    assert written.equals(generate_table(cfg, lineage=True))
