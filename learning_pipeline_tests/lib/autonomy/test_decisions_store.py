"""Approvals, stage changes and learning cycles in the state store: history round-trips, the former lake
tables imported once, and concurrent decisions about one version (threads and processes) of which exactly one
succeeds, never two live versions. Every test runs on SQLite under the data directory and on the local
PostgreSQL server (a fresh schema per test)."""

import multiprocessing
import os
import threading
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learning_pipeline.lib.autonomy import continuous as loop
from learning_pipeline.lib.autonomy import graduation as g
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import STATE_URL_ENV, close_state_stores
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._postgres_state import (  # backend: autouse, every test on both stores
    backend,  # noqa: F401
    run_in_processes,
)

T0 = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def paths(tmp_path):
    return LakePaths.at(tmp_path / "data")


def to_shadow(paths, *versions):
    """Versions approved by a person and moved to shadow, as the graduation check does."""
    for v in versions:
        g.record_approval(paths, v, g.PENDING, "auto-approval", "automatic", "auto-approval is off", at=T0)
        g.record_approval(paths, v, g.APPROVED, "alice", "human", "looks right", {"samples": 500}, at=T0)
        g.record_transition(paths, v, g.APPROVED, g.SHADOW, "graduation", "automatic", "criteria met", at=T0)


def live_counts_over_history(paths) -> list[int]:
    """Replays every stage change in commit order: the number of live versions after each one."""
    stages, counts = {}, []
    for row in g.read_graduation_events(paths).itertuples():
        stages[row.version] = row.to_stage
        counts.append(sum(s == g.LIVE for s in stages.values()))
    return counts


def test_history_round_trips(paths):
    to_shadow(paths, 1, 2)
    g.start_canary(paths, 2, "bob", "try it on 5%", at=T0)
    g.approve_live(paths, 1, "bob", "shadow agrees", at=T0)
    rows = g.approve_live(paths, 2, "carol", "canary holds", at=T0)
    assert [(r["version"], r["from_stage"], r["to_stage"]) for r in rows] == [
        (1, "live", "retired"),
        (2, "canary", "live"),
    ]
    assert g.previous_live(paths, 2) == 1
    g.demote(paths, 2, "dave", "human", "regressed", {"success": 0.41}, at=T0)  # live returns to v1
    assert g.current_stages(paths) == {1: g.LIVE, 2: g.RETIRED}
    assert g.approval_status(paths) == {1: g.APPROVED, 2: g.APPROVED}

    events = g.read_graduation_events(paths)
    assert list(events.columns) == g.GRADUATION_TABLE.names
    assert events[["version", "from_stage", "to_stage"]].values.tolist() == [
        [1, "candidate", "approved"],
        [1, "approved", "shadow"],
        [2, "candidate", "approved"],
        [2, "approved", "shadow"],
        [2, "shadow", "canary"],
        [1, "shadow", "live"],
        [1, "live", "retired"],
        [2, "canary", "live"],
        [2, "live", "retired"],
        [1, "retired", "live"],
    ]
    assert events["recorded_at"].is_monotonic_increasing and events["id"].is_unique
    assert (events["at"] == T0).all() and str(events["at"].dtype) == "datetime64[us, UTC]"
    demoted = events.iloc[-2]
    assert demoted["triggered_by"] == "dave" and demoted["metrics"] == '{"success": 0.41}'
    assert events.iloc[-1]["reason"] == "v2 demoted: regressed"
    approvals = g.read_approvals(paths)
    assert list(approvals.columns) == g.APPROVALS_TABLE.names
    assert approvals["version"].tolist() == [1, 1, 2, 2]
    assert approvals["decision"].tolist() == ["pending_approval", "approved"] * 2
    assert approvals["decided_by"].tolist() == ["auto-approval", "alice"] * 2
    assert approvals.iloc[1]["metrics"] == '{"samples": 500}'

    loop.record_cycle_event(
        paths, loop.CYCLE_REQUESTED, T0, "sensor", run_key="r1", staging_seq=7, new_events=150
    )
    loop.record_cycle_event(
        paths,
        loop.CONVERGED,
        T0.replace(hour=13),
        "sensor",
        mean_improvement=0.004,
        details={"evaluations": 3},
    )
    cycles = loop.read_learning_cycles(paths)
    assert list(cycles.columns) == loop.LEARNING_CYCLES_TABLE.names
    assert cycles["event_type"].tolist() == ["cycle_requested", "converged"]
    assert cycles["staging_seq"].tolist()[0] == 7 and cycles["new_events"].tolist()[0] == 150
    assert cycles["mean_improvement"].iloc[1] == 0.004 and cycles["details"].iloc[1] == '{"evaluations": 3}'
    state = loop.loop_state(cycles, T0.replace(hour=14))
    assert state.last_cycle_seq == 7 and state.cycles_today == 1 and state.converged_at == T0.replace(hour=13)

    with lake_connection(paths) as con:  # the lake snapshots carry the same rows
        for table, frame in (
            ("graduation_events", events),
            ("model_approvals", approvals),
            ("learning_cycles", cycles),
        ):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == len(frame)


def test_refused_transitions_name_the_stage(paths):
    to_shadow(paths, 1)
    with pytest.raises(
        g.DecisionConflict, match="version 1 is in stage shadow; the transition expected live"
    ):
        g.record_transition(paths, 1, g.LIVE, g.RETIRED, "x", "automatic", "stale view")
    with pytest.raises(g.DecisionConflict, match="only live, canary or shadow demote"):
        g.demote(paths, 3, "x", "human", "never moved")
    with pytest.raises(g.DecisionConflict, match="not pending approval \\(status: approved\\)"):
        g.record_approval(paths, 1, g.APPROVED, "bob", "human", "again")
    with pytest.raises(g.DecisionConflict, match="already has the approval decision approved"):
        g.record_approval(paths, 1, g.PENDING, "auto-approval", "automatic", "again")
    assert g.current_stages(paths) == {1: g.SHADOW} and len(g.read_approvals(paths)) == 2


def _old_batch(paths, table: str, rows: list[dict], schema: pa.Schema, name: str) -> None:
    """A batch as the former Parquet appends wrote it: lake/<table>/<name>.parquet."""
    directory = paths.table(table)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / f"{name}.parquet")


def test_the_former_lake_tables_are_imported_once(paths):
    def stage_row(i, version, from_stage, to_stage):
        at = T0.replace(minute=i)
        values = [f"e{i}", version, from_stage, to_stage, "old", "human", "r", "{}", at, at]
        return dict(zip(g.GRADUATION_TABLE.names, values, strict=True))

    events = [stage_row(1, 1, "candidate", "approved"), stage_row(2, 1, "approved", "shadow")]
    _old_batch(paths, "graduation_events", events, g.GRADUATION_TABLE.schema, "a")
    _old_batch(
        paths, "graduation_events", [stage_row(3, 1, "shadow", "live")], g.GRADUATION_TABLE.schema, "b"
    )
    values = ["p1", 1, "approved", "old", "human", "r", "{}", T0, T0]
    approval = dict(zip(g.APPROVALS_TABLE.names, values, strict=True))
    _old_batch(paths, "model_approvals", [approval], g.APPROVALS_TABLE.schema, "a")
    # an early learning_cycles batch, written before the `details` column existed
    early = pa.schema([f for f in loop.LEARNING_CYCLES_TABLE.schema if f.name != "details"])
    values = [
        "c1",
        "cycle_requested",
        T0,
        "learning_cycle_schedule",
        "2026-11-02",
        "k",
        4,
        None,
        None,
        "scheduled",
    ]
    cycle = dict(zip(early.names, values, strict=True))
    _old_batch(paths, "learning_cycles", [cycle], early, "a")

    assert g.current_stages(paths) == {1: g.LIVE} and g.approval_status(paths) == {1: g.APPROVED}
    assert g.read_graduation_events(paths)["id"].tolist() == ["e1", "e2", "e3"]
    cycles = loop.read_learning_cycles(paths)
    assert cycles["run_key"].tolist() == ["k"] and cycles["details"].isna().all()
    for table, n in (("graduation_events", 2), ("model_approvals", 1), ("learning_cycles", 1)):
        assert sorted(p.name for p in paths.table(table).iterdir()) == ["data.parquet"]  # the snapshot only
        assert len(list((paths.root / "autonomy" / "imported" / table).glob("*.parquet"))) == n

    # a new process (fresh store) imports nothing twice, and decisions go on from the imported history
    close_state_stores()
    to_shadow(paths, 2)
    g.approve_live(paths, 2, "bob", "better", at=T0)
    assert g.current_stages(paths) == {1: g.RETIRED, 2: g.LIVE}
    assert len(g.read_graduation_events(paths)) == 3 + 2 + 2 and len(loop.read_learning_cycles(paths)) == 1
    assert g.previous_live(paths, 2) == 1


def test_threads_approving_one_version_at_once_one_succeeds(paths):
    g.record_approval(paths, 1, g.PENDING, "auto-approval", "automatic", "auto-approval is off", at=T0)
    n = 8
    barrier, outcomes = threading.Barrier(n), []

    def approve(i):
        barrier.wait()
        try:
            g.record_approval(paths, 1, g.APPROVED, f"person-{i}", "human", "ok")
            outcomes.append("approved")
        except g.DecisionConflict as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes.count("approved") == 1
    assert outcomes.count("version 1 is not pending approval (status: approved)") == n - 1
    assert g.read_approvals(paths)["decision"].tolist() == ["pending_approval", "approved"]
    assert g.read_graduation_events(paths)[["from_stage", "to_stage"]].values.tolist() == [
        ["candidate", "approved"]
    ]


def _promote(root: str, state_url: str | None, own: int, barrier, queue) -> None:
    if state_url:
        os.environ[STATE_URL_ENV] = state_url
    paths = LakePaths.at(root)
    outcomes = []
    barrier.wait(120)
    for version in (1, own):  # every process promotes the shared version 1, then its own one
        try:
            g.approve_live(paths, version, f"person-{own}", "go")
            outcomes.append((version, "live"))
        except g.DecisionConflict as error:
            outcomes.append((version, str(error)))
    queue.put(outcomes)


def test_processes_promoting_at_once_never_make_two_versions_live(paths):
    n = 4
    to_shadow(paths, 1, *range(2, 2 + n))
    barrier = multiprocessing.get_context("spawn").Barrier(n)
    args = [(str(paths.root), os.environ.get(STATE_URL_ENV), own, barrier) for own in range(2, 2 + n)]
    outcomes = run_in_processes(_promote, args)
    shared = [result for version, result in outcomes if version == 1]
    assert shared.count("live") == 1
    refused = "version 1 is in stage {}; only a version in shadow or canary can go live"
    assert all(r in (refused.format("live"), refused.format("retired")) for r in shared if r != "live")
    assert all(result == "live" for version, result in outcomes if version != 1)  # each from its own shadow
    stages = g.current_stages(paths)
    assert list(stages.values()).count(g.LIVE) == 1 and stages[1] == g.RETIRED
    assert max(live_counts_over_history(paths)) == 1
