"""Code location for the freshness benchmark: the project's definitions plus the automation the benchmark
measures (set by environment variables so the same file serves the default and the tuned run).

    FRESHNESS_EAGER_POSTERIORS=1        agent_stats marts and agent_posteriors follow their parents (eager)
    FRESHNESS_AUTOMATION_SECONDS=N      interval of the automation-condition sensor (Dagster's default: 30)
    FRESHNESS_IN_PROCESS=1              run every job with the in-process executor (one process per run)
"""

import os

import dagster as dg

from learning_pipeline.definitions import defs as project

TARGETS = {"agent_stats", "agent_task_stats", "agent_posteriors"}
eager = os.environ.get("FRESHNESS_EAGER_POSTERIORS") == "1"


def _spec(spec: dg.AssetSpec) -> dg.AssetSpec:
    if eager and spec.key.to_user_string() in TARGETS and spec.automation_condition is None:
        # eager() also waits while any parent partition is missing; a daily parent always has old, never
        # materialized days, so that clause is dropped here
        condition = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
        return spec.replace_attributes(automation_condition=condition)
    return spec


assets = [a.map_asset_specs(_spec) if isinstance(a, dg.AssetsDefinition) else a for a in project.assets]
automation = dg.AutomationConditionSensorDefinition(
    "freshness_automation_sensor",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=int(os.environ.get("FRESHNESS_AUTOMATION_SECONDS", "30")),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
defs = dg.Definitions(
    assets=assets,
    asset_checks=list(project.asset_checks or []),
    jobs=list(project.jobs or []),
    schedules=list(project.schedules or []),
    sensors=[s for s in (project.sensors or [])] + [automation],
    resources=project.resources,
    executor=dg.in_process_executor if os.environ.get("FRESHNESS_IN_PROCESS") == "1" else None,
)
