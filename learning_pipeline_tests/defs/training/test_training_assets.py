"""Materialize sft_pairs, routing_pairs and agent_config_recommendations on lake fixtures; run their checks."""

import json
import tomllib

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.training.definitions import defs as training_location
from learning_pipeline.lib.simulation import SimulationConfig, SimulationTruth, generate_table
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.training import training_data as td
from learning_pipeline.lib.training.agent_configs import (
    current_config_path,
    list_config_versions,
    restore_agent_config,
)
from learning_pipeline_tests._training_fixtures import event, write_events, write_table

ASSETS = list(training_location().assets)
CHECKS = list(training_location().asset_checks)


def _asset(name):
    return next(a for a in ASSETS if dg.AssetKey(name) in a.keys)


def _checks_for(name):
    return [c for c in CHECKS if any(k.asset_key == dg.AssetKey(name) for k in c.check_keys)]


def _failed(result):
    evaluations = result.get_asset_check_evaluations()
    assert evaluations, "checks ran"
    return {e.check_name: e.metadata for e in evaluations if not e.passed}


def _sft_rows():
    obj = {"result": "done", "n": 1}
    return [
        # day 1: kept, exact duplicate, duplicate after redaction, below quality, missing io (4 ways), failure
        event(
            ts="2025-03-01T09:00:00",
            input="Summarize for bob@example.com",
            output=obj,
            agent="react_agent",
            task_type="summarize",
            metadata={"model": "gpt-4"},
        ),
        event(ts="2025-03-01T10:00:00", input="Summarize for bob@example.com", output=obj),
        event(ts="2025-03-01T11:00:00", input="Summarize for eve@example.org", output=obj),
        event(ts="2025-03-01T12:00:00", input="low", output="q", quality=0.5),
        event(ts="2025-03-01T12:00:01", input="no quality", output="q", quality=None),
        event(ts="2025-03-01T12:00:02", input=None, output="out"),
        event(ts="2025-03-01T12:00:03", input="   ", output="out"),
        event(ts="2025-03-01T12:00:04", input={}, output="out"),
        event(ts="2025-03-01T12:00:05", input="in", output=None),
        event(ts="2025-03-01T12:00:06", input="failed", output="x", status="failure"),
        event(
            ts="2025-03-01T13:00:00",
            input={"q": "card 4111 1111 1111 1111, key sk-abcdefghijklmnopqrstu"},
            output="Call +1 (555) 123-4567",
            agent='quote"agent',
            task_type=None,
            action_type="lookup",
        ),
        # day 2: one pair already exported on day 1, one new
        event(ts="2025-03-02T08:00:00", input="Summarize for bob@example.com", output=obj),
        event(ts="2025-03-02T09:00:00", input="Translate: hola", output="hello", quality=0.7),
    ]


def test_sft_pairs_partitions(lake):
    paths = lake.paths
    write_events(paths, _sft_rows())
    sft = _asset("sft_pairs")

    r1 = dg.materialize(
        [sft, *_checks_for("sft_pairs")], partition_key="2025-03-01", resources={"lake": lake}
    )
    assert r1.success and not _failed(r1)
    meta = r1.asset_materializations_for_node("sft_pairs")[0].metadata
    counts = {
        k: meta[k].value
        for k in (
            "candidates",
            "below_quality",
            "missing_io",
            "duplicates_in_partition",
            "duplicates_of_earlier_partitions",
            "exported",
        )
    }
    assert counts == {
        "candidates": 10,
        "below_quality": 2,
        "missing_io": 4,
        "duplicates_in_partition": 2,
        "duplicates_of_earlier_partitions": 0,
        "exported": 2,
    }
    assert (
        meta["redacted_email"].value,
        meta["redacted_card"].value,
        meta["redacted_secret"].value,
        meta["redacted_phone"].value,
    ) == (1, 1, 1, 1)

    lines = td.sft_export_path(paths, "2025-03-01").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [[m["role"] for m in r["messages"]] for r in records] == [["system", "user", "assistant"]] * 2
    first, second = records
    assert first["messages"][0]["content"] == "You are react_agent, an agent that handles summarize tasks."
    assert first["messages"][1]["content"] == "Summarize for [EMAIL]"  # a JSON string becomes its text
    assert first["messages"][2]["content"] == '{"result":"done","n":1}'  # an object its compact JSON
    assert second["messages"][0]["content"] == 'You are quote"agent, an agent that handles lookup tasks.'
    assert second["messages"][1]["content"] == '{"q":"card [CARD], key [SECRET]"}'
    assert second["messages"][2]["content"] == "Call [PHONE]"
    assert set(first) == {"messages"}

    parquet = pq.read_table(td.sft_parquet_path(paths, "2025-03-01"))
    assert parquet.num_rows == 2 and parquet.column("messages").to_pylist() == lines

    r2 = dg.materialize(
        [sft, *_checks_for("sft_pairs")], partition_key="2025-03-02", resources={"lake": lake}
    )
    assert r2.success and not _failed(r2)
    meta2 = r2.asset_materializations_for_node("sft_pairs")[0].metadata
    assert meta2["duplicates_of_earlier_partitions"].value == 1 and meta2["exported"].value == 1
    day2 = [json.loads(x) for x in td.sft_export_path(paths, "2025-03-02").read_text().splitlines()]
    assert day2[0]["messages"][1]["content"] == "Translate: hola"

    # Re-materializing a day gives the same export (it only looks at earlier days).
    before = td.sft_export_path(paths, "2025-03-01").read_bytes()
    assert dg.materialize([sft], partition_key="2025-03-01", resources={"lake": lake}).success
    assert td.sft_export_path(paths, "2025-03-01").read_bytes() == before
    assert not list(td.sft_export_path(paths, "2025-03-01").parent.glob(".*tmp"))

    # An empty day exports an empty file; a stricter threshold drops more.
    strict = dg.materialize(
        [sft],
        partition_key="2025-03-02",
        resources={"lake": lake},
        run_config={"ops": {"sft_pairs": {"config": {"min_quality": 0.8}}}},
    )
    meta3 = strict.asset_materializations_for_node("sft_pairs")[0].metadata
    assert meta3["below_quality"].value == 1 and meta3["exported"].value == 0
    assert td.sft_export_path(paths, "2025-03-02").read_text() == ""


def test_sft_checks_catch_tampering(lake):
    paths = lake.paths
    write_events(paths, _sft_rows())
    assert dg.materialize([_asset("sft_pairs")], partition_key="2025-03-01", resources={"lake": lake}).success
    assert td.check_sft_consistent_with_events(paths).passed
    export = td.sft_export_path(paths, "2025-03-01")
    export.write_text(export.read_text().splitlines()[0] + "\n")
    assert not td.check_sft_consistent_with_events(paths).passed
    # a pair written back with raw PII is found by the no-PII check
    table = pq.read_table(td.sft_parquet_path(paths, "2025-03-01"))
    leaked = table.set_column(
        table.schema.get_field_index("input"), "input", [["mail alice@example.com"] * table.num_rows]
    )
    pq.write_table(leaked, td.sft_parquet_path(paths, "2025-03-01"))
    outcome = td.check_sft_no_pii_left(paths)
    assert not outcome.passed and outcome.details["email"] == table.num_rows


def test_sft_rejects_bad_input(lake):
    with pytest.raises(FileNotFoundError, match="outcome_events"):
        td.build_sft_pairs(lake.paths, "2025-03-01")
    write_events(lake.paths, _sft_rows())
    for bad in ("2025-13-01", "../x", "2025-03-01' OR 1=1 --"):
        with pytest.raises(ValueError):
            td.build_sft_pairs(lake.paths, bad)
    with pytest.raises(ValueError):
        td.build_sft_pairs(lake.paths, "2025-03-01", min_quality=1.5)


@pytest.fixture(scope="module")
def simulated_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    config = SimulationConfig(days=3, events_per_day=1500, seed=11, end_date="2025-03-03")
    table = generate_table(config, lineage=True)
    # a few events without task_type fall back to action_type; some without complexity
    write_table(LakePaths.at(root).ensure(), table)
    return root, config


def _pandas_routing(paths: LakePaths, min_samples: int) -> pd.DataFrame:
    files = sorted(paths.table("outcome_events").glob("event_date=*/data.parquet"))
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    df["task_type"] = df["task_type"].fillna(df["action_type"]).fillna("unspecified")
    df["model"] = (
        df["metadata"].map(lambda m: (json.loads(m) or {}).get("model") if m else None).fillna("unspecified")
    )
    df["complexity"] = df["context"].map(lambda c: (json.loads(c) or {}).get("complexity") if c else None)
    df["latency"] = df["latency_ms"].fillna(df["duration_ms"])
    df["ok"] = (df["status"] == "success").astype(float)
    # the reward without penalty weights: success 1, partial its quality (0.5 when missing), else 0
    df["reward"] = df["ok"].where(df["status"] != "partial", df["quality_score"].fillna(0.5))

    def stats(frame, complexity):
        g = frame.groupby(["task_type", "agent_name", "model"])
        out = pd.DataFrame(
            {
                "executions": g.size(),
                "success_rate": g["ok"].mean(),
                "reward_mean": g["reward"].mean(),
                "quality_mean": g["quality_score"].mean(),
                "latency_p50_ms": g["latency"].median(),
                "cost_total_usd": g["cost_usd"].sum(),
            }
        ).reset_index()
        out["complexity"] = complexity if complexity is not None else frame["complexity"].iloc[0]
        return out

    parts = [stats(df, "*")]
    for value, frame in df[df["complexity"].notna()].groupby("complexity"):
        parts.append(stats(frame, value))
    stats_df = pd.concat(parts, ignore_index=True)
    stats_df["eligible"] = stats_df["executions"] >= min_samples
    stats_df = stats_df.sort_values(
        [
            "task_type",
            "complexity",
            "eligible",
            "reward_mean",
            "success_rate",
            "quality_mean",
            "executions",
            "agent_name",
            "model",
        ],
        ascending=[True, True, False, False, False, False, False, True, True],
        na_position="last",
    )
    stats_df["rank"] = stats_df.groupby(["task_type", "complexity"]).cumcount() + 1
    return stats_df


def test_routing_pairs_match_pandas(simulated_lake):
    root, config = simulated_lake
    lake = LakeResource(data_dir=str(root))
    result = dg.materialize(
        [_asset("routing_pairs"), *_checks_for("routing_pairs")],
        resources={"lake": lake},
        run_config={"ops": {"routing_pairs": {"config": {"min_samples": 30}}}},
    )
    assert result.success and not _failed(result)

    ours = pq.read_table(td.routing_parquet_path(LakePaths.at(root))).to_pandas()
    expected = _pandas_routing(LakePaths.at(root), min_samples=30)
    keys = ["task_type", "complexity", "agent_name", "model"]
    merged = ours.merge(expected, on=keys, suffixes=("", "_pd"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["executions"] == merged["executions_pd"]).all()
    assert (merged["rank"] == merged["rank_pd"]).all()
    for column in ("success_rate", "reward_mean", "quality_mean", "latency_p50_ms", "cost_total_usd"):
        assert np.allclose(merged[column], merged[f"{column}_pd"], equal_nan=True), column
    assert (merged["eligible"] == merged["eligible_pd"]).all()

    # Pooled over models, the best agent per task type (all complexities) is the simulator's true best.
    by_agent = (
        ours[ours["complexity"] == "*"]
        .groupby(["task_type", "agent_name"])[["executions", "successes"]]
        .sum()
    )
    by_agent["rate"] = by_agent["successes"] / by_agent["executions"]
    top = by_agent["rate"].groupby(level="task_type").idxmax().map(lambda key: key[1]).to_dict()
    truth = SimulationTruth(config).best_agents()
    agree = np.mean([top.get(t) == a for t, a in truth.items()])
    assert agree >= 0.8, (top, truth)


def test_routing_min_samples_leaves_classes_without_best(lake):
    write_events(
        lake.paths, [event(agent="a", task_type="t"), event(agent="b", task_type="t", status="failure")]
    )
    result = td.build_routing_pairs(lake.paths, min_samples=5)
    table = result.table.to_pandas()
    assert not table["is_best"].any() and table["best_agent"].isna().all()
    assert result.classes_with_best == 0 and td.check_routing_pairs(lake.paths).passed
    with pytest.raises(ValueError):
        td.build_routing_pairs(lake.paths, min_samples=0)


def test_agent_config_recommendations_asset(simulated_lake, tmp_path):
    root, config = simulated_lake
    lake = LakeResource(data_dir=str(root))
    asset = _asset("agent_config_recommendations")
    result = dg.materialize([asset, *_checks_for("agent_config_recommendations")], resources={"lake": lake})
    assert result.success and not _failed(result)
    meta = result.asset_materializations_for_node("agent_config_recommendations")[0].metadata
    assert meta["agents"].value == len(config.agents) == meta["new_versions"].value
    paths = LakePaths.at(root)
    agent = config.agents[0]
    doc = tomllib.loads(current_config_path(paths, agent).read_text())
    assert doc["agent"]["name"] == agent and doc["agent"]["max_turns"] >= 1
    assert set(doc["agent"]["preferred_task_types"]) <= set(config.task_types)

    again = dg.materialize(
        [asset],
        resources={"lake": lake},
        run_config={"ops": {"agent_config_recommendations": {"config": {"max_turns_cap": 1}}}},
    )
    assert again.asset_materializations_for_node("agent_config_recommendations")[0].metadata[
        "new_versions"
    ].value == len(config.agents)
    assert tomllib.loads(current_config_path(paths, agent).read_text())["agent"]["max_turns"] == 1
    restored = restore_agent_config(paths, agent, 1)
    assert restored.version == 3
    assert tomllib.loads(current_config_path(paths, agent).read_text())["agent"] == doc["agent"]
    assert [v.version for v in list_config_versions(paths, agent)] == [1, 2, 3]


def test_sft_pairs_on_simulated_events(simulated_lake):
    root, config = simulated_lake
    lake = LakeResource(data_dir=str(root))
    day = "2025-03-02"
    result = dg.materialize(
        [_asset("sft_pairs"), *_checks_for("sft_pairs")], partition_key=day, resources={"lake": lake}
    )
    assert result.success and not _failed(result)
    meta = result.asset_materializations_for_node("sft_pairs")[0].metadata

    df = pq.read_table(LakePaths.at(root).partition_dir("outcome_events", day) / "data.parquet").to_pandas()
    ok = df[df["status"] == "success"]
    assert meta["candidates"].value == len(ok)
    assert meta["below_quality"].value == int(
        (ok["quality_score"].isna() | (ok["quality_score"] < 0.7)).sum()
    )
    assert (
        meta["exported"].value + meta["duplicates_in_partition"].value + meta["missing_io"].value
        == len(ok) - meta["below_quality"].value
    )
    text = td.sft_export_path(LakePaths.at(root), day).read_text()
    assert "@example.com" not in text and "+1-555-" not in text
    assert meta["redacted_email"].value + meta["redacted_phone"].value > 0
    with duckdb.connect() as con:
        n = con.execute(
            f"SELECT count(*) FROM read_json('{td.sft_export_path(LakePaths.at(root), day)}')"
        ).fetchall()
    assert n[0][0] == meta["exported"].value
