"""Runs launched the way the Dagster UI launches them: through the workspace's code location.

`JobDefinition.execute_in_process` makes runs with no code-location origin, which the UI cannot re-execute
and does not list on the job's page. Here the workspace the UI loads (`workspace.yaml`) starts its code
server, each run is created from that code location's job (so it carries the remote origin the UI uses to
re-execute it) and launched by the instance's run launcher in a run worker, as the daemon would launch it,
bypassing the run queue so no daemon is needed. Sensor cursors are set on the same code location's sensors.

Dagster has no public Python API for loading a workspace or creating a run from a code location (its CLI
and GraphQL server use these internals), hence the `dagster._core` imports, all kept in this module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget, WorkspaceFileTarget

from learning_pipeline.cli.common import CommandError
from learning_pipeline.lib.autonomy.alerts import root_cause_line

CODE_LOCATION_MODULE = "learning_pipeline.definitions"
# The project's workspace.yaml (what `make ui` loads) when installed from a checkout.
WORKSPACE_FILE = Path(__file__).resolve().parents[2] / "workspace.yaml"
PARTITION_TAG = "dagster/partition"
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class RunFailedError(CommandError):
    pass


class CodeLocationRuns:
    """`with CodeLocationRuns(instance) as runs: runs.execute("daily_job", partition_key="2026-01-01")`."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        workspace_file: Path | None = WORKSPACE_FILE,
        poll_seconds: float = 0.5,
        timeout_seconds: float = 3600.0,
    ):
        self.instance = instance
        if workspace_file is not None and Path(workspace_file).is_file():
            self._target = WorkspaceFileTarget(paths=[str(workspace_file)])
        else:  # an installed package without the checkout: the same module, the same location name
            self._target = ModuleTarget(
                module_name=CODE_LOCATION_MODULE, attribute="defs", working_directory=None, location_name=None
            )
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._process_context: WorkspaceProcessContext | None = None

    def __enter__(self) -> CodeLocationRuns:
        self._process_context = WorkspaceProcessContext(
            self.instance, self._target, code_server_log_level="WARNING"
        )
        self._process_context.__enter__()
        try:
            self._location()  # fail now, with the code location's own error, if it did not load
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._process_context is not None:
            self._process_context.__exit__(*exc_info)
            self._process_context = None

    def _request_context(self):
        if self._process_context is None:
            raise RuntimeError("CodeLocationRuns is used outside its `with` block")
        return self._process_context.create_request_context()

    def _location(self):
        context = self._request_context()
        names = list(context.code_location_names)
        if len(names) != 1:
            raise RuntimeError(f"expected one code location in the workspace, found {names}")
        error = context.get_code_location_error(names[0])
        if error is not None:
            raise RuntimeError(f"code location {names[0]} failed to load:\n{error.to_string()}")
        location = context.get_code_location(names[0])
        (repository,) = location.get_repositories().values()
        return context, location, repository

    def launch(
        self,
        job_name: str,
        run_config: Mapping[str, object] | None = None,
        partition_key: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create a run of the code location's job and launch it in a run worker; returns its run id."""
        context, location, repository = self._location()
        remote_job = location.get_job(
            JobSubsetSelector(
                location_name=location.name,
                repository_name=repository.name,
                job_name=job_name,
                op_selection=None,
            )
        )
        run_config = dict(run_config or {})
        plan = location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        run_tags = {**remote_job.tags, **(tags or {})}
        if partition_key is not None:
            run_tags[PARTITION_TAG] = partition_key
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            status=None,
            tags=run_tags,
            root_run_id=None,
            parent_run_id=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            job_snapshot=remote_job.job_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            asset_selection=None,
            asset_check_selection=None,
            resolved_op_selection=remote_job.resolved_op_selection,
            op_selection=None,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_graph=repository.asset_graph,
        )
        self.instance.launch_run(run.run_id, context)
        return run.run_id

    def wait(self, run_id: str) -> dg.DagsterRun:
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not finish within {self.timeout_seconds:.0f} s")
            time.sleep(self.poll_seconds)

    def execute(self, job_name: str, **options) -> dg.DagsterRun:
        """Launch a run (`options` as for `launch`) and wait for it; raises RunFailedError naming the failed
        steps if it did not succeed."""
        run = self.wait(self.launch(job_name, **options))
        if run.status != dg.DagsterRunStatus.SUCCESS:
            partition_key = options.get("partition_key")
            what = f"{job_name}" + (f" for {partition_key}" if partition_key else "")
            raise RunFailedError(
                f"{what} ended {run.status.value}: {self._failures(run.run_id)}. The run's logs: run "
                f"{run.run_id} in the Dagster UI (make ui)"
            )
        return run

    def _failures(self, run_id: str) -> str:
        """The failed steps' errors, and errors the run worker reported outside a step (e.g. the code location
        failing to import), one line each."""
        messages = []
        for entry in self.instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            error = getattr(event.event_specific_data, "error", None)
            if not event.is_failure and error is None:
                continue
            # the root cause names the problem
            message = root_cause_line(error) if error is not None else (entry.user_message or "").strip()
            if message:
                messages.append(f"{event.step_key or 'run'}: {message.splitlines()[0]}")
        return "; ".join(dict.fromkeys(messages)) or "see the run's logs in the Dagster UI"

    def set_sensor_cursor(self, sensor_name: str, cursor: str | None) -> None:
        """Set a sensor's cursor, keeping its status (a sensor running by default stays so)."""
        _, _, repository = self._location()
        sensor = repository.get_sensor(sensor_name)
        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        if state is None:
            self.instance.add_instigator_state(
                InstigatorState(
                    sensor.get_remote_origin(),
                    InstigatorType.SENSOR,
                    InstigatorStatus.DECLARED_IN_CODE,
                    SensorInstigatorData(
                        min_interval=sensor.min_interval_seconds,
                        cursor=cursor,
                        sensor_type=sensor.sensor_type,
                    ),
                )
            )
            return
        data = state.instigator_data
        self.instance.update_instigator_state(
            state.with_data(
                SensorInstigatorData(
                    last_tick_timestamp=getattr(data, "last_tick_timestamp", None),
                    last_run_key=getattr(data, "last_run_key", None),
                    min_interval=sensor.min_interval_seconds,
                    cursor=cursor,
                    last_tick_start_timestamp=getattr(data, "last_tick_start_timestamp", None),
                    last_sensor_start_timestamp=getattr(data, "last_sensor_start_timestamp", None),
                    sensor_type=sensor.sensor_type,
                )
            )
        )

    def sensor_cursor(self, sensor_name: str) -> str | None:
        _, _, repository = self._location()
        sensor = repository.get_sensor(sensor_name)
        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        return getattr(state.instigator_data, "cursor", None) if state is not None else None
