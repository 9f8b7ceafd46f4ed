"""A run killed with SIGKILL while it holds the `duckdb_warehouse` pool slot must not block the pool forever.

A real `dagster-daemon` runs against a temporary DAGSTER_HOME holding the project's instance settings
(`dagster.yaml`, and `deploy/dagster.yaml` on the local PostgreSQL). A code location with one asset in the
warehouse pool is launched through the instance's run queue (`dagster job launch`); the run worker is killed
with SIGKILL mid-step while it holds the slot, and the next run of a step in the same pool, queued behind
it, must succeed within a minute: the dead run is marked failed and its slot freed by the daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from learning_pipeline.defs.resources import WAREHOUSE_POOL

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# What the project promises: a dead run is failed and its slots are free again within this many seconds.
RECOVERY_SECONDS = 60

LOCATION = textwrap.dedent(
    f'''
    """A code location with one step in the warehouse pool that records its process and can hold the slot."""
    import os
    import time
    from pathlib import Path

    import dagster as dg

    MARKERS = Path(__file__).parent / "markers"


    class HoldConfig(dg.Config):
        hold_seconds: float = 0.0


    @dg.asset(pool="{WAREHOUSE_POOL}")
    def warehouse_step(context: dg.AssetExecutionContext, config: HoldConfig) -> None:
        MARKERS.mkdir(exist_ok=True)
        (MARKERS / f"{{context.run_id}}.pid").write_text(str(os.getpid()))
        time.sleep(config.hold_seconds)
        (MARKERS / f"{{context.run_id}}.done").write_text("done")


    warehouse_job = dg.define_asset_job(
        "warehouse_job", selection=[warehouse_step], executor_def=dg.in_process_executor
    )
    defs = dg.Definitions(assets=[warehouse_step], jobs=[warehouse_job])
    '''
)


def _wait_until(predicate, timeout: float, what: str, describe=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{describe()}")
        time.sleep(0.5)


def _run_monitoring(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()).get("run_monitoring") or {}


def test_both_instance_files_monitor_runs_and_free_slots_of_dead_runs():
    """The local and the production instance files carry the same run-monitoring settings, and they free
    the slots of a dead run within RECOVERY_SECONDS (the slow tests below prove it with a real daemon)."""
    local = _run_monitoring(PROJECT_ROOT / "dagster.yaml")
    deploy = _run_monitoring(PROJECT_ROOT / "deploy" / "dagster.yaml")
    assert local == deploy
    assert local.get("enabled") is True
    assert local.get("max_resume_run_attempts") == 0  # the default run launcher cannot resume a run
    freed_after = local["free_slots_after_run_end_seconds"] + local["poll_interval_seconds"]
    assert 0 < freed_after <= RECOVERY_SECONDS / 2


class _Daemon:
    """`dagster-daemon run` in its own process group, so everything it starts (code server, run workers) is
    stopped with it."""

    def __init__(self, cwd: Path, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            try:  # whatever the daemon started and left behind
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.proc.poll() is None:
                self.proc.wait(10)
        finally:
            self.log.close()


def _launch(cwd: Path, env: dict[str, str], run_id: str, hold_seconds: float) -> None:
    config = {"ops": {"warehouse_step": {"config": {"hold_seconds": hold_seconds}}}}
    done = subprocess.run(
        [
            str(VENV_BIN / "dagster"),
            "job",
            "launch",
            "-w",
            "workspace.yaml",
            "-j",
            "warehouse_job",
            "--run-id",
            run_id,
            "--config-json",
            json.dumps(config),
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _claimed(instance: dg.DagsterInstance) -> list[str]:
    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    return sorted(slot.run_id for slot in info.claimed_slots)


def _killed_run_frees_the_pool(tmp_path: Path, instance_file: Path, extra_env: dict[str, str]) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(instance_file, home / "dagster.yaml")
    location = tmp_path / "location"
    location.mkdir()
    (location / "pool_location.py").write_text(LOCATION)
    (location / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: pool_location.py\n      attribute: defs\n"
        "      location_name: pool_location\n"
    )
    markers = location / "markers"
    env = {**os.environ, "DAGSTER_HOME": str(home), **extra_env}
    env.pop("DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT", None)

    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    # The instance's storage is created here, before any other process opens it (concurrent first opens of
    # a sqlite instance race on its schema).
    with dg.DagsterInstance.from_config(str(home)) as instance:
        daemon = _Daemon(location, env, tmp_path / "daemon.log")
        try:

            def status(run_id: str):
                run = instance.get_run_by_id(run_id)
                return run.status if run else None

            def describe() -> str:
                return (
                    f"run 1: {status(first)}, run 2: {status(second)}, slots held by {_claimed(instance)}\n"
                    f"daemon log:\n{daemon.output()}"
                )

            # Run 1 takes the warehouse slot and holds it.
            _launch(location, env, first, hold_seconds=600)
            pid = int(
                _wait_until(
                    lambda: (markers / f"{first}.pid").exists() and (markers / f"{first}.pid").read_text(),
                    90,
                    "run 1 to start its step",
                    describe,
                )
            )
            assert _claimed(instance) == [first]

            # Run 2 of a step in the same pool waits behind it.
            _launch(location, env, second, hold_seconds=0)
            time.sleep(3)
            assert status(second) != dg.DagsterRunStatus.SUCCESS

            # The run worker dies mid-step, holding the slot.
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()

            _wait_until(
                lambda: status(second) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE),
                RECOVERY_SECONDS,
                "the next run in the pool to finish after the kill",
                describe,
            )
            recovered_in = time.monotonic() - killed_at
            print(f"killed run failed, its slot freed and the next run done in {recovered_in:.1f} s")
            assert status(second) == dg.DagsterRunStatus.SUCCESS, describe()
            assert (markers / f"{second}.done").exists()
            assert status(first) == dg.DagsterRunStatus.FAILURE, describe()
            assert not (markers / f"{first}.done").exists()
            assert _claimed(instance) == [], describe()
            assert recovered_in < RECOVERY_SECONDS
        finally:
            daemon.stop()


@pytest.mark.slow
def test_killed_run_frees_the_warehouse_pool_local_instance(tmp_path):
    _killed_run_frees_the_pool(tmp_path, PROJECT_ROOT / "dagster.yaml", {})


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_run_frees_the_warehouse_pool_production_instance(tmp_path, dagster_pg_url):
    # DAGSTER_PG_URL is read by this process's instance and the daemon's
    _killed_run_frees_the_pool(tmp_path, PROJECT_ROOT / "deploy" / "dagster.yaml", {})
