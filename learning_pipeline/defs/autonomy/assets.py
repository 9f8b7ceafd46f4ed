"""Autonomy assets (approvals, graduation, alerts) and the human-approval jobs."""

import dagster as dg
import pandas as pd

from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.lazy import lazy_module
from learning_pipeline.defs.metadata import markdown_table
from learning_pipeline.defs.models.resources import MlflowResource
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.autonomy import continuous as loop
from learning_pipeline.lib.autonomy import graduation
from learning_pipeline.lib.autonomy.alerts import (
    detect_degradation,
    milestone_alerts,
    raise_and_notify,
    window_success_rates,
)
from learning_pipeline.lib.storage.warehouse import lake_connection

autonomy_ops = lazy_module("learning_pipeline.lib.autonomy.operations")


@dg.asset(
    deps=[dg.AssetDep("model_versions")],
    kinds={"mlflow", "parquet"},
    group_name="autonomy",
)
def model_approvals(
    context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, autonomy: AutonomyResource
) -> dg.MaterializeResult:
    """Approval of every version the eval gate accepted: auto-approved when auto-approval is on and the
    thresholds hold, else pending_approval (a person approves; @champion stays on an approved version)."""
    paths = lake.paths
    thresholds = autonomy.effective(paths).thresholds()  # with the operator's stored settings
    decided = autonomy_ops.decide_approvals(paths, mlflow.uri, thresholds, now=autonomy.clock())
    approvals = graduation.read_approvals(paths)
    for rec in decided:
        context.log.info(f"v{rec['version']}: {rec['decision']} ({rec['reason']})")
    return dg.MaterializeResult(
        metadata={
            "auto_approve": autonomy.auto_approve,
            "decided_now": dg.MetadataValue.int(len(decided)),
            "pending": dg.MetadataValue.int(
                int((approvals.groupby("version")["decision"].last() == graduation.PENDING).sum())
                if not approvals.empty
                else 0
            ),
            "decisions": markdown_table(
                approvals[["version", "decision", "decided_by", "reason", "at"]].tail(20)
            ),
        }
    )


@dg.asset(
    deps=[model_approvals, dg.AssetDep("outcome_events")],
    kinds={"mlflow", "parquet"},
    group_name="autonomy",
)
def graduation_status(
    context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource, autonomy: AutonomyResource
) -> dg.MaterializeResult:
    """learning -> shadow when the graduation criteria hold on live traffic; shadow versions compared with
    live traffic and logged to MLflow; shadow/live demoted to learning on degradation. Live needs a human
    approval (graduation_approval_job or `learning-pipeline graduation approve`)."""
    paths = lake.paths
    results = autonomy_ops.run_graduation(
        paths,
        mlflow.uri,
        autonomy.effective(paths).criteria(),
        triggered_by=f"graduation_status (run {context.run.run_id[:8]})",
        now=autonomy.clock(),
        store=autonomy.alert_store(paths),
        webhook_url=autonomy.webhook_url or None,
        artifact_location=mlflow.artifact_location,
    )
    frame = pd.DataFrame(results)
    cols = [
        c
        for c in [
            "version",
            "stage_before",
            "stage",
            "n_agree",
            "success_agree",
            "agreement_rate",
            "max_drawdown",
            "unmet",
        ]
        if c in frame.columns
    ]
    status = autonomy_ops.status_frame(paths, mlflow.uri)
    stages = status["stage"].astype(str) if not status.empty else pd.Series(dtype=str)
    live = status.loc[stages == graduation.LIVE, "version_number"] if not status.empty else []
    return dg.MaterializeResult(
        metadata={
            "checked": dg.MetadataValue.int(len(results)),
            # numbers Dagster charts over time; -1: no live version
            "live_version": dg.MetadataValue.int(int(max(live)) if len(live) else -1),
            "shadow_versions": dg.MetadataValue.int(int((stages == graduation.SHADOW).sum())),
            "canary_versions": dg.MetadataValue.int(int((stages == graduation.CANARY).sum())),
            "status": markdown_table(status),
            "checks": markdown_table(frame[cols].round(4) if not frame.empty else frame),
        }
    )


@dg.asset(
    deps=[graduation_status, dg.AssetDep("outcome_events")],
    kinds={"duckdb", "parquet"},
    group_name="autonomy",
)
def agent_alerts(
    context: dg.AssetExecutionContext, lake: LakeResource, autonomy: AutonomyResource
) -> dg.MaterializeResult:
    """agent_alerts: PERFORMANCE_DEGRADATION (success rate down > 10% relative over the last 3 windows),
    MILESTONE, plus CONVERGENCE, GRADUATION_READY and ERROR raised by sensors and graduation; de-
    duplicated; optionally POSTed to a webhook."""
    paths = lake.paths
    now = autonomy.clock()
    store = autonomy.alert_store(paths)
    rule = autonomy.degradation_rule()
    with lake_connection(paths) as con:
        rates = window_success_rates(con, now.date(), rule)
    candidates = detect_degradation(rates, rule)
    candidates += milestone_alerts(_cycles(paths))
    raised = []
    for alert in candidates:
        alert.source = f"agent_alerts (run {context.run.run_id[:8]})"
        row, detail = raise_and_notify(store, alert, autonomy.webhook_url or None, now=now)
        if row is not None:
            raised.append(row)
            context.log.info(f"{alert.severity} {alert.alert_type}: {alert.title} (webhook: {detail})")
    open_alerts = store.list(include_acknowledged=False)
    return dg.MaterializeResult(
        metadata={
            "raised": dg.MetadataValue.int(len(raised)),
            "suppressed": dg.MetadataValue.int(len(candidates) - len(raised)),
            "open": dg.MetadataValue.int(len(open_alerts)),
            "open_critical": dg.MetadataValue.int(
                int((open_alerts["severity"].astype(str).str.lower() == "critical").sum())
                if len(open_alerts)
                else 0
            ),
            "open_alerts": markdown_table(
                open_alerts[["id", "alert_type", "severity", "title", "created_at"]].head(20)
            ),
        }
    )


def _cycles(paths) -> int:
    cycles = loop.read_learning_cycles(paths)
    return int((cycles["event_type"] == loop.CYCLE_REQUESTED).sum())


autonomy_job = dg.define_asset_job(
    "autonomy_job",
    selection=dg.AssetSelection.assets(model_approvals, graduation_status, agent_alerts),
    description="After a learning cycle (and on its schedule): approvals, graduation check, alerts.",
)


# ---- human decisions -----------------------------------------------------------------------------


class HumanDecisionConfig(dg.Config):
    version: int
    by: str
    reason: str


def _human_decision_job(name: str, op_name: str, action: str, done: str, description: str):
    """A job of one op that applies a person's decision (`operations.<action>`) to the configured version."""

    @dg.op(name=op_name, description=description)
    def decide(
        context: dg.OpExecutionContext,
        config: HumanDecisionConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
    ) -> dict:
        rec = getattr(autonomy_ops, action)(lake.paths, mlflow.uri, config.version, config.by, config.reason)
        context.log.info(f"v{config.version} {done} by {config.by}: {config.reason}")
        return rec

    @dg.job(name=name, description=f"{description} (config: version, by, reason).")
    def job():
        decide()

    return job


graduation_approval_job = _human_decision_job(
    "graduation_approval_job",
    "approve_for_live",
    "approve_live",
    "is live, approved",
    "Approve a version in shadow or canary for live traffic: the only way a version goes live",
)
candidate_approval_job = _human_decision_job(
    "candidate_approval_job",
    "approve_pending_candidate",
    "approve_candidate",
    "approved",
    "Approve a gate-accepted version waiting for a person (stage approved; live needs a second decision)",
)
