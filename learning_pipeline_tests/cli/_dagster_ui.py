"""What `make ui` serves after a demo, for the demos' tests: the workspace's code location (workspace.yaml) over
the demo's instance, its GraphQL API, and a re-execution as the UI's "Re-execute" button makes it."""

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from learning_pipeline.cli.code_location_runs import WORKSPACE_FILE
from learning_pipeline.lib.storage.lake import DATA_DIR_ENV

LOCATION = "learning_pipeline.definitions:defs"
REPOSITORY = "__repository__"

REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
  }
}
"""


def run_demo(command: list[str]) -> subprocess.CompletedProcess:
    """A demo command as a user runs it; it must succeed."""
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@contextmanager
def ui_context(data_dir: Path, home: Path) -> Iterator[tuple[dg.DagsterInstance, object]]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATA_DIR_ENV, str(data_dir))
        env.setenv("DAGSTER_HOME", str(home))
        env.delenv("LEARNING_PIPELINE_START_DATE", raising=False)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            with define_out_of_process_context(str(WORKSPACE_FILE), None, instance) as context:
                yield instance, context


def graphql(context, query: str, variables: dict | None = None) -> dict:
    result = execute_dagster_graphql(context, query, variables)
    assert not result.errors, result.errors
    return result.data


def reexecute(instance: dg.DagsterInstance, context, parent_run_id: str) -> dg.DagsterRun:
    """Re-execute a run through GraphQL as the UI does and wait for the re-execution to finish."""
    data = graphql(context, REEXECUTE, {"parentRunId": parent_run_id})
    launched = data["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    # The UI queues it (the instance's run queue); the daemon under `make ui` launches queued runs like this.
    if instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.QUEUED:
        instance.launch_run(run_id, context)
    deadline = time.monotonic() + 900
    while not (run := instance.get_run_by_id(run_id)).is_finished:
        assert time.monotonic() < deadline, "the re-execution did not finish"
        time.sleep(1)
    assert run.parent_run_id == parent_run_id
    return run
