"""The continuous-learning sensor under a controlled clock: cooldown, daily cap, convergence, data shift."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.autonomy.sensors import continuous_learning_sensor, learning_cycle_schedule
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.autonomy import continuous as loop
from learning_pipeline.lib.events.staging import StagedFile
from learning_pipeline.lib.learning.cycle import record_learning_event
from learning_pipeline_tests._models_fixtures import simulated_lake

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def land(paths, records: int) -> None:
    """Append a staging-log line, as staging does when a landing file of `records` events is staged."""
    log = paths.staging / "_log.jsonl"
    seq = sum(1 for _ in open(log)) + 1 if log.exists() else 1
    entry = StagedFile(
        seq=seq, landing_file=f"f{seq}.jsonl", size=1, mtime_ns=0, staged_at="", records=records
    )
    with open(log, "a") as handle:
        handle.write(entry.to_json() + "\n")


def tick(lake, now, cursor=None, **settings):
    autonomy = AutonomyResource(now=now.isoformat(), min_new_events=100, **settings)
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"lake": lake, "autonomy": autonomy},
        sensor_name="continuous_learning_sensor",
    )
    result = continuous_learning_sensor(context)
    reason = (
        result.skip_reason.skip_message
        if result.skip_reason
        else result.run_requests[0].tags["learning_pipeline/reason"]
    )
    return result, reason


def test_min_new_events_cooldown_and_restart(lake):
    paths = lake.paths
    result, reason = tick(lake, T0)
    assert not result.run_requests and "0 new events" in reason
    land(paths, 150)
    result, reason = tick(lake, T0)
    assert len(result.run_requests) == 1 and result.run_requests[0].partition_key == "2026-11-03"
    land(paths, 500)
    # cooldown: 30 minutes later, enough events but too soon
    result, reason = tick(lake, T0 + timedelta(minutes=30), cursor=result.cursor)
    assert not result.run_requests and reason.startswith("cooldown")
    # a restarted sensor (no cursor) reaches the same decision from the learning_cycles table
    result, reason = tick(lake, T0 + timedelta(minutes=30), cursor=None)
    assert not result.run_requests and reason.startswith("cooldown")
    result, reason = tick(lake, T0 + timedelta(minutes=61))
    assert len(result.run_requests) == 1 and "500 new events" in reason
    assert json.loads(result.cursor)["staging_seq"] == 2
    cycles = loop.read_learning_cycles(paths)
    assert (cycles["event_type"] == loop.CYCLE_REQUESTED).sum() == 2


def test_daily_cap_resets_at_utc_midnight(lake):
    paths = lake.paths
    now = datetime(2026, 11, 3, 20, 0, tzinfo=UTC)
    runs = 0
    for i in range(4):
        land(paths, 200)
        result, reason = tick(
            lake, now + timedelta(minutes=i), max_iterations_per_day=3, min_iteration_gap_minutes=0
        )
        runs += len(result.run_requests)
    assert runs == 3 and reason.startswith("daily cap reached: 3/3") and "2026-11-04 00:00" in reason
    result, reason = tick(
        lake,
        datetime(2026, 11, 3, 23, 59, tzinfo=UTC),
        max_iterations_per_day=3,
        min_iteration_gap_minutes=0,
    )
    assert not result.run_requests
    result, reason = tick(
        lake,
        datetime(2026, 11, 4, 0, 0, 1, tzinfo=UTC),
        max_iterations_per_day=3,
        min_iteration_gap_minutes=0,
    )
    assert len(result.run_requests) == 1 and "cycle 1/3 today" in reason
    # the new day has no events yet: a cycle just after midnight evaluates the day that ended
    assert result.run_requests[0].partition_key == "2026-11-03"


def test_convergence_pauses_until_a_data_shift(tmp_path):
    # 6 days ending 2026-11-06; from day index 4 (2026-11-05) the best agent of every task changes
    paths, cfg, _ = simulated_lake(
        tmp_path / "data", days=6, events_per_day=3000, end_date="2026-11-06", switch_day=4
    )
    lake = LakeResource(data_dir=str(tmp_path / "data"))
    start = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
    for i, improvement in enumerate([0.05, 0.004, 0.002, 0.001]):
        land(paths, 200)
        result, reason = tick(lake, start + timedelta(hours=2 * i))
        assert len(result.run_requests) == 1, reason
        record_learning_event(
            paths,
            "evaluation_accepted" if improvement > 0.02 else "evaluation_rejected",
            improvement=improvement,
        )
    land(paths, 1000)
    now = start + timedelta(hours=8)
    result, reason = tick(lake, now)
    assert (
        not result.run_requests and reason.startswith("converged: mean improvement") and "+0.0023" in reason
    )
    # still converged: the day after convergence looks like the day before (no switch yet)
    result, reason = tick(lake, now + timedelta(hours=14))
    assert not result.run_requests and "paused until a data shift" in reason and "no data shift" in reason
    # after the switch the success rates moved: a shift wakes the loop and a cycle is requested
    result, reason = tick(lake, datetime(2026, 11, 6, 12, 0, tzinfo=UTC))
    assert len(result.run_requests) == 1 and "data shift" in reason and "woke up" in reason
    events = loop.read_learning_cycles(paths)["event_type"].tolist()
    assert events[-3] == loop.CONVERGED and set(events[-2:]) == {loop.WOKEN, loop.CYCLE_REQUESTED}
    # improvements from before the wake-up no longer count: no immediate re-convergence
    land(paths, 1000)
    result, reason = tick(lake, datetime(2026, 11, 6, 14, 0, tzinfo=UTC))
    assert len(result.run_requests) == 1, reason


def test_learning_cycle_schedule_requests_the_tick_day(lake):
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 3, 6, 0, tzinfo=UTC), resources={"lake": lake}
    )
    request = learning_cycle_schedule(context)
    assert (
        request.partition_key == "2026-11-03"
        and request.tags["learning_pipeline/trigger"] == "learning_cycle_schedule"
    )
    assert loop.read_learning_cycles(lake.paths)["trigger"].tolist() == ["learning_cycle_schedule"]


def test_a_midnight_learning_cycle_evaluates_the_day_that_just_ended(lake):
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 4, 0, 0, tzinfo=UTC), resources={"lake": lake}
    )
    assert learning_cycle_schedule(context).partition_key == "2026-11-03"


def test_operator_settings_switch_the_loop_and_change_its_thresholds(lake, capsys):
    from learning_pipeline.cli import main
    from learning_pipeline.lib.autonomy.settings import SettingsStore

    paths = lake.paths
    land(paths, 150)
    data_dir = ["--data-dir", str(paths.root)]
    off = ["settings", "set", "continuous_learning=false", "--by", "alice", "--reason", "incident", *data_dir]
    assert main(off) == 0
    result, reason = tick(lake, T0)
    assert not result.run_requests and "switched off" in reason
    # back on, with a higher bar: 150 new events are no longer enough
    on = ["settings", "set", "continuous_learning=true", "min_new_events=200", "--by", "bob", "--reason", "x"]
    assert main([*on, *data_dir]) == 0
    result, reason = tick(lake, T0)
    assert not result.run_requests and "150 new events" in reason
    # reset to the resource's default (100): the loop runs
    assert (
        main(["settings", "set", "min_new_events=default", "--by", "bob", "--reason", "back", *data_dir]) == 0
    )
    result, reason = tick(lake, T0)
    assert len(result.run_requests) == 1
    # a bad value is refused, naming the field, and nothing is stored
    capsys.readouterr()
    assert main(["settings", "set", "max_iterations_per_day=0", "--by", "x", "--reason", "y", *data_dir]) == 2
    assert "max_iterations_per_day" in capsys.readouterr().err
    history = SettingsStore(paths).history()
    assert history["by"].tolist() == ["bob", "bob", "bob", "alice"]
    assert history["name"].tolist()[:1] == ["min_new_events"]
    assert list(zip(history["old_value"], history["new_value"], strict=True))[0] == ("200", "100")
