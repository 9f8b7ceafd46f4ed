"""outcome_events / quarantined_events through dagster.materialize: every bad-input class, counts, dedup."""

import copy
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learning_pipeline.defs.events.assets import outcome_events
from learning_pipeline.lib.events.schema import OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.simulation.simulate import SEED_EXAMPLE_EVENTS
from learning_pipeline.lib.storage.lake import land_raw_lines, land_records, write_parquet_atomic
from learning_pipeline.lib.storage.warehouse import lake_connection

DAY = "2025-10-09"

# The two example events of the seed document (realtime_feedback_pipeline.md), verbatim.
SUCCESS_EXAMPLE, FAILURE_EXAMPLE = SEED_EXAMPLE_EVENTS


def event(event_id: str, **fields) -> dict:
    record = copy.deepcopy(SUCCESS_EXAMPLE)
    record["event_id"] = event_id
    record.update(fields)
    return record


def materialize_day(lake, day: str = DAY) -> dg.ExecuteInProcessResult:
    result = dg.materialize([outcome_events], partition_key=day, resources={"lake": lake})
    assert result.success
    return result


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [mat] = [
        m for m in result.asset_materializations_for_node("outcome_events") if m.asset_key.path == [asset]
    ]
    return {key: value.value for key, value in mat.metadata.items()}


def read_partition(lake, table: str, day: str = DAY) -> list[dict]:
    return pq.read_table(lake.paths.partition_dir(table, day) / "data.parquet").to_pylist()


def test_seed_examples_are_accepted_verbatim(lake):
    land_records(lake.paths.landing, [SUCCESS_EXAMPLE, FAILURE_EXAMPLE])
    result = materialize_day(lake)

    rows = {r["event_id"]: r for r in read_partition(lake, "outcome_events")}
    assert set(rows) == {SUCCESS_EXAMPLE["event_id"], FAILURE_EXAMPLE["event_id"]}
    success = rows[SUCCESS_EXAMPLE["event_id"]]
    assert success["timestamp"] == datetime(2025, 10, 9, 12, 34, 56, 789000, tzinfo=UTC)
    assert success["tokens_used"] == 150 and success["tags"] == ["reasoning", "analysis"]
    assert json.loads(success["output"]) == SUCCESS_EXAMPLE["output"]
    assert json.loads(success["metadata"]) == {"model": "gpt-4", "provider": "openai"}
    failure = rows[FAILURE_EXAMPLE["event_id"]]
    assert failure["status"] == "failure" and failure["retry_count"] == 2
    assert failure["stack_trace"].startswith("Traceback")
    assert metadata(result, "outcome_events")["received"] == 2
    assert metadata(result, "outcome_events")["quarantined"] == 0
    written = pq.read_schema(lake.paths.partition_dir("outcome_events", DAY) / "data.parquet")
    assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in OUTCOME_EVENT_SCHEMA]


BAD_RECORDS = [
    # (raw JSONL line, expected reason, fragment of the details)
    ('{"event_id": "m1", "agent_name": ', "malformed_json", "not valid JSON"),
    ("[1, 2, 3]", "malformed_json", "must be a JSON object"),
    (
        json.dumps({k: v for k, v in event("r1").items() if k != "agent_name"}),
        "missing_required_field",
        "agent_name",
    ),
    (
        json.dumps({k: v for k, v in event("r2").items() if k != "timestamp"}),
        "missing_required_field",
        "timestamp",
    ),
    (json.dumps(event("t1", tokens_used="lots")), "wrong_type", "tokens_used must be an integer"),
    (json.dumps(event("t2", latency_ms="fast")), "wrong_type", "latency_ms must be a number"),
    (json.dumps(event("t3", tags="not-a-list")), "wrong_type", "tags must be a list of strings"),
    (json.dumps(event("t4", context=["high"])), "wrong_type", "context must be a JSON object"),
    (json.dumps(event("t5", timestamp="yesterday at noon")), "wrong_type", "timestamp must be an ISO-8601"),
    (json.dumps(event("t6", agent_name=42)), "wrong_type", "agent_name must be a string"),
    (json.dumps(event("o1", quality_score=1.7)), "out_of_range", "quality_score"),
    (json.dumps(event("o2", tokens_used=-5)), "out_of_range", "tokens_used"),
    (json.dumps(event("o3", selection_propensity=0)), "out_of_range", "selection_propensity"),
    (json.dumps(event("o4", agent_name="x" * 300)), "out_of_range", "agent_name"),
    (json.dumps(event("s1", status="exploded")), "unknown_status", "exploded"),
    (json.dumps(event("s2", severity="meh")), "unknown_severity", "meh"),
]


def test_every_bad_record_class_is_quarantined_with_its_reason(lake):
    good = [json.dumps(event(f"good-{i}")) for i in range(3)]
    lines = good + [line for line, _, _ in BAD_RECORDS]
    (lake.paths.landing / "mixed.jsonl").write_text("\n".join(lines) + "\n")

    # Records without a usable timestamp are quarantined on the day they arrived.
    today = datetime.now(UTC).date().isoformat()
    result = materialize_day(lake)
    arrival = materialize_day(lake, today)

    quarantined = read_partition(lake, "quarantined_events") + read_partition(
        lake, "quarantined_events", today
    )
    by_line = {row["record_number"]: row for row in quarantined}
    assert {r["reason"] for r in read_partition(lake, "quarantined_events", today)} == {
        "malformed_json",
        "missing_required_field",
        "wrong_type",
    }
    for offset, (_, reason, fragment) in enumerate(BAD_RECORDS):
        row = by_line[len(good) + offset + 1]
        assert row["reason"] == reason, row
        assert fragment in row["details"], row
        assert row["source_file"] == "mixed.jsonl"
        assert row["raw_record"]
    accepted = read_partition(lake, "outcome_events")
    assert sorted(r["event_id"] for r in accepted) == ["good-0", "good-1", "good-2"]
    meta, late = metadata(result, "outcome_events"), metadata(arrival, "outcome_events")
    assert meta["received"] + late["received"] == len(lines)
    assert meta["accepted"] + late["accepted"] == 3
    assert meta["quarantined"] + late["quarantined"] == len(BAD_RECORDS)
    assert meta["duplicates"] + late["duplicates"] == 0
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"event_ids_unique": True}


def test_future_and_oversized_records_are_quarantined_on_their_arrival_day(lake):
    now = datetime.now(UTC)
    today = now.date().isoformat()
    future = (now + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    fresh = now.isoformat().replace("+00:00", "Z")
    land_records(
        lake.paths.landing,
        [
            event("future", timestamp=future),
            event("big", timestamp=fresh, output={"text": "x" * (lake.max_record_bytes + 10)}),
            event("fine", timestamp=fresh),
        ],
    )
    materialize_day(lake, today)

    reasons = {r["event_id"]: r["reason"] for r in read_partition(lake, "quarantined_events", today)}
    assert reasons == {"future": "future_timestamp", "big": "oversized_payload"}
    assert [r["event_id"] for r in read_partition(lake, "outcome_events", today)] == ["fine"]


def test_a_record_too_long_to_parse_is_quarantined_without_parsing(lake):
    huge_line = '{"event_id": "huge", "pad": "' + "y" * (lake.max_record_bytes + 1) + '"}'
    malformed = "{oops"
    (lake.paths.landing / "big.jsonl").write_text(huge_line + "\n" + malformed + "\n")
    today = datetime.now(UTC).date().isoformat()
    materialize_day(lake, today)
    reasons = [r["reason"] for r in read_partition(lake, "quarantined_events", today)]
    assert reasons == ["oversized_payload", "malformed_json"]


def test_duplicates_across_redeliveries_and_reruns_are_counted_once(lake):
    land_records(lake.paths.landing, [event("a"), event("b"), event("a")])
    land_records(lake.paths.landing, [event("b"), event("c")])  # a re-delivered batch

    first = metadata(materialize_day(lake), "outcome_events")
    second = metadata(materialize_day(lake), "outcome_events")

    assert sorted(r["event_id"] for r in read_partition(lake, "outcome_events")) == ["a", "b", "c"]
    for meta in (first, second):
        assert (meta["received"], meta["accepted"], meta["quarantined"], meta["duplicates"]) == (5, 3, 0, 2)


def test_late_events_land_in_their_day_on_the_next_materialization(lake):
    land_records(lake.paths.landing, [event("early")])
    materialize_day(lake)
    land_records(lake.paths.landing, [event("late", timestamp="2025-10-09T23:59:59Z")])
    materialize_day(lake)
    assert sorted(r["event_id"] for r in read_partition(lake, "outcome_events")) == ["early", "late"]


def test_a_file_spanning_days_feeds_each_day_its_own_events(lake):
    land_records(
        lake.paths.landing,
        [
            event("d1"),
            event("d2", timestamp="2025-10-10T00:00:01+00:00"),
            event("d3", timestamp="2025-10-10T01:30:00+02:00"),
        ],
    )
    materialize_day(lake, "2025-10-09")
    materialize_day(lake, "2025-10-10")
    # 2025-10-10T01:30+02:00 is 2025-10-09T23:30Z: partitions follow UTC.
    assert sorted(r["event_id"] for r in read_partition(lake, "outcome_events", "2025-10-09")) == ["d1", "d3"]
    assert [r["event_id"] for r in read_partition(lake, "outcome_events", "2025-10-10")] == ["d2"]


def test_hostile_names_are_plain_data(lake):
    hostile = ["'; DROP TABLE outcome_events; --", "../../etc/passwd", 'quote"d', "a/b\\c"]
    land_records(
        lake.paths.landing,
        [event(f"h{i}", agent_name=name, task_type=name) for i, name in enumerate(hostile)],
    )
    (lake.paths.landing / "odd name's file.jsonl").write_text(json.dumps(event("h9", agent_name="ok")) + "\n")
    materialize_day(lake)

    con = lake_connection(lake.paths)
    names = con.execute(
        "SELECT agent_name FROM outcome_events WHERE task_type = ? ORDER BY 1", [hostile[0]]
    ).fetchall()
    assert names == [(hostile[0],)]
    assert con.execute("SELECT count(*) FROM outcome_events").fetchone()[0] == 5
    written = {p.relative_to(lake.paths.root).parts[0] for p in lake.paths.root.rglob("*") if p.is_file()}
    assert written <= {"landing", "staging", "lake", "warehouse.duckdb", ".warehouse.lock"}


def test_parquet_drops_and_raw_line_batches_are_ingested(lake):
    typed = pa.Table.from_pylist(
        [
            {
                "event_id": "pq1",
                "agent_name": "p",
                "timestamp": datetime(2025, 10, 9, 8, tzinfo=UTC),
                "status": "Partial",
                "quality_score": 0.4,
                "context": '{"complexity": "low"}',
            }
        ]
    )
    write_parquet_atomic(lake.paths.landing / "drop.parquet", typed.drop_columns(["context"]))
    land_raw_lines(
        lake.paths.landing,
        [json.dumps(event("raw1")), "\x00garbage"],
        ["agent-outcomes/0/41", "agent-outcomes/0/42"],
    )
    materialize_day(lake)

    accepted = {r["event_id"]: r for r in read_partition(lake, "outcome_events")}
    assert set(accepted) == {"pq1", "raw1"}
    assert accepted["pq1"]["status"] == "partial"
    today = datetime.now(UTC).date().isoformat()
    materialize_day(lake, today)  # undated records are quarantined on their arrival day
    [bad] = read_partition(lake, "quarantined_events", today)
    assert (bad["reason"], bad["source_ref"]) == ("malformed_json", "agent-outcomes/0/42")


def test_warehouse_file_has_views_over_all_partitions(lake):
    land_records(lake.paths.landing, [event("w1"), event("w2", timestamp="2025-10-10T10:00:00Z")])
    materialize_day(lake, "2025-10-09")
    materialize_day(lake, "2025-10-10")
    with duckdb.connect(str(lake.paths.warehouse), read_only=True) as con:
        rows = con.execute("SELECT event_date::VARCHAR, event_id FROM outcome_events ORDER BY 1").fetchall()
    assert rows == [("2025-10-09", "w1"), ("2025-10-10", "w2")]


def test_an_empty_day_materializes_empty_partitions(lake):
    result = materialize_day(lake, "2025-03-01")
    assert metadata(result, "outcome_events")["received"] == 0
    assert read_partition(lake, "outcome_events", "2025-03-01") == []


@pytest.mark.parametrize("suffix", [".jsonl.gz"])
def test_gzipped_jsonl_is_read(lake, suffix):
    import gzip

    (lake.paths.landing / f"batch{suffix}").write_bytes(
        gzip.compress((json.dumps(event("gz")) + "\n").encode())
    )
    materialize_day(lake)
    assert [r["event_id"] for r in read_partition(lake, "outcome_events")] == ["gz"]


def test_bytes_that_are_not_utf8_quarantine_their_line_only(lake):
    good = json.dumps(event("utf-ok")).encode()
    broken = b'{"event_id": "bad-bytes", "agent_name": "\xff\xfe", "status": "success"}'
    (lake.paths.landing / "latin.jsonl").write_bytes(
        good + b"\n" + broken + b"\r\n" + good.replace(b"utf-ok", b"utf-ok2") + b"\r\n"
    )
    today = datetime.now(UTC).date().isoformat()
    materialize_day(lake)
    materialize_day(lake, today)
    assert sorted(r["event_id"] for r in read_partition(lake, "outcome_events")) == ["utf-ok", "utf-ok2"]
    [bad] = read_partition(lake, "quarantined_events", today)
    assert bad["reason"] == "malformed_json" and bad["record_number"] == 2 and "\\xff" in bad["raw_record"]


def test_pretty_printed_raw_records_are_parsed(lake):
    pretty = json.dumps(event("pretty"), indent=2)
    land_raw_lines(lake.paths.landing, [pretty, json.dumps(event("flat"))], ["t/0/1", "t/0/2"])
    materialize_day(lake)
    assert sorted(r["event_id"] for r in read_partition(lake, "outcome_events")) == ["flat", "pretty"]


def _materialize_in_process(data_dir: str, day: str) -> bool:
    from learning_pipeline.defs.resources import LakeResource

    result = dg.materialize(
        [outcome_events], partition_key=day, resources={"lake": LakeResource(data_dir=data_dir)}
    )
    return result.success


def test_concurrent_runs_of_different_days_share_one_lake(lake):
    """Two processes ingest different days at once: staging and the DuckDB warehouse file take turns."""
    import multiprocessing

    days = [f"2025-10-{d:02d}" for d in range(10, 14)]
    for i, day in enumerate(days):
        land_records(
            lake.paths.landing, [event(f"c{i}-{n}", timestamp=f"{day}T0{n}:00:00Z") for n in range(5)]
        )
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        outcomes = pool.starmap(_materialize_in_process, [(lake.data_dir, day) for day in days])
    assert outcomes == [True] * len(days)

    from learning_pipeline.lib.events.staging import read_log

    assert len(read_log(lake.paths)) == len(days)  # every landing file staged exactly once
    with duckdb.connect(str(lake.paths.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT event_date) FROM outcome_events").fetchone() == (
            20,
            4,
        )
