"""learning_summary: the one page a person opens first. What serves (live / canary / shadow versions), the last
gate decision and why, the best agent per task type and context with its credible interval, open alerts
(degradation alerts are the drift signal) and the event counts, as markdown plus numbers Dagster charts."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from learning_pipeline.defs.autonomy.resources import AutonomyResource
from learning_pipeline.defs.lazy import lazy_module
from learning_pipeline.defs.metadata import markdown_table
from learning_pipeline.defs.models.resources import MlflowResource
from learning_pipeline.defs.partitions import follows_new_data
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.summary import links
from learning_pipeline.lib.autonomy import graduation
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection

registry = lazy_module("learning_pipeline.lib.learning.registry")

GROUP = "summary"
ALL = "*"
DEGRADATION = "PERFORMANCE_DEGRADATION"
SERVING_STAGES = (graduation.LIVE, graduation.CANARY, graduation.SHADOW)


@dataclass
class Summary:
    stages: dict[int, str] = field(default_factory=dict)  # version -> stage (registered versions only)
    last_version: dict | None = None  # the newest registered version: gate, reason, improvement
    best: pd.DataFrame = field(default_factory=pd.DataFrame)  # best agent per task type (all contexts)
    best_by_context: pd.DataFrame = field(default_factory=pd.DataFrame)
    alerts: pd.DataFrame = field(default_factory=pd.DataFrame)  # open alerts, newest first
    accepted_events: int = 0
    quarantined_events: int = 0

    def versions_in(self, stage: str) -> list[int]:
        return sorted(v for v, s in self.stages.items() if s == stage)


def _stages(paths: LakePaths, versions: pd.DataFrame) -> dict[int, str]:
    stages = graduation.current_stages(paths)
    out = {}
    for row in versions.itertuples(index=False):
        number = int(row.version_number)
        default = graduation.CANDIDATE if row.gate == "accepted" else graduation.REJECTED
        out[number] = stages.get(number) or default
    return out


def _best(posteriors: pd.DataFrame, by_context: bool) -> pd.DataFrame:
    cols = ["task_type", "context_key", "context_value", "agent_name", "mean", "ci_low", "ci_high", "p_best"]
    if posteriors.empty:
        return pd.DataFrame(columns=[*cols, "n_events"])
    frame = posteriors[posteriors["task_type"] != ALL]
    frame = frame[frame["context_key"] != ALL] if by_context else frame[frame["context_key"] == ALL]
    keys = ["task_type", "context_key", "context_value"]
    best = frame.sort_values(["p_best", "mean"], ascending=False).groupby(keys, sort=True).head(1)
    return best.sort_values(keys)[[*cols, "n_events"]].reset_index(drop=True)


def _count(paths: LakePaths, table: str) -> int:
    if not paths.table(table).exists() or not any(paths.table(table).rglob("*.parquet")):
        return 0
    glob = str(paths.table(table) / "**" / "*.parquet")
    with lake_connection(paths) as con:
        return int(
            con.execute("SELECT count(*) FROM read_parquet(?, hive_partitioning = true)", [glob]).fetchone()[
                0
            ]
        )


def build_summary(paths: LakePaths, tracking_uri: str, alerts: pd.DataFrame) -> Summary:
    versions = registry.model_versions_frame(tracking_uri)
    summary = Summary(alerts=alerts)
    if not versions.empty:
        summary.stages = _stages(paths, versions)
        last = versions.sort_values("version_number").iloc[-1]
        summary.last_version = {
            "version": int(last["version_number"]),
            "gate": str(last["gate"]),
            "reason": str(last["gate_reason"]),
            "improvement": float(last["improvement"]) if pd.notna(last["improvement"]) else None,
            "run_id": str(last["mlflow_run_id"] or ""),
        }
    posteriors_file = paths.table("agent_posteriors") / "data.parquet"
    posteriors = pd.read_parquet(posteriors_file) if posteriors_file.exists() else pd.DataFrame()
    summary.best = _best(posteriors, by_context=False)
    summary.best_by_context = _best(posteriors, by_context=True)
    summary.accepted_events = _count(paths, "outcome_events")
    summary.quarantined_events = _count(paths, "quarantined_events")
    return summary


def _versions_line(summary: Summary, stage: str) -> str:
    versions = summary.versions_in(stage)
    return ", ".join(f"v{v}" for v in versions) if versions else "none"


def render_markdown(summary: Summary) -> str:
    lines = ["## What serves", ""]
    for stage in SERVING_STAGES:
        lines.append(f"- **{stage}**: {_versions_line(summary, stage)}")
    lines += ["", "## Last gate decision", ""]
    last = summary.last_version
    if last is None:
        lines.append("No version registered yet: run `learning_cycle_job` for a day with held-out events.")
    else:
        improvement = f", improvement {last['improvement']:+.4f}" if last["improvement"] is not None else ""
        stage = summary.stages.get(last["version"], "")
        lines.append(
            f"v{last['version']}: **{last['gate']}**{improvement} (now {stage}). Why: {last['reason']}"
        )
    lines += ["", "## Best agent per task type (posterior mean, 95 % interval, P(best))", ""]
    lines.append(markdown_table(_agents_table(summary.best), empty="(no posteriors yet)").value)
    lines += ["", "## Best agent per task type and context", ""]
    lines.append(
        markdown_table(_agents_table(summary.best_by_context).head(40), empty="(no context buckets)").value
    )
    lines += ["", f"## Open alerts ({len(summary.alerts)})", ""]
    if summary.alerts.empty:
        lines.append("None.")
    else:
        cols = [c for c in ("alert_type", "severity", "title", "created_at") if c in summary.alerts.columns]
        lines.append(markdown_table(summary.alerts[cols].head(15)).value)
        drift = (
            int((summary.alerts["alert_type"] == DEGRADATION).sum()) if "alert_type" in summary.alerts else 0
        )
        lines += ["", f"Drift: {drift} open performance-degradation alert(s)."]
    lines += [
        "",
        f"Events: {summary.accepted_events} accepted, {summary.quarantined_events} quarantined.",
    ]
    return "\n".join(lines)


def _agents_table(best: pd.DataFrame) -> pd.DataFrame:
    if best.empty:
        return best
    out = best.copy()
    out["interval"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(out["ci_low"], out["ci_high"], strict=True)]
    out["context"] = [
        ALL if key == ALL else f"{key}={value}"
        for key, value in zip(out["context_key"], out["context_value"], strict=True)
    ]
    out["mean"], out["p_best"] = out["mean"].round(3), out["p_best"].round(3)
    return out[["task_type", "context", "agent_name", "mean", "interval", "p_best", "n_events"]]


def summary_metadata(summary: Summary, tracking_uri: str) -> dict[str, dg.MetadataValue]:
    live = summary.versions_in(graduation.LIVE)
    last = summary.last_version or {}
    metadata: dict[str, dg.MetadataValue] = {
        "summary": dg.MetadataValue.md(render_markdown(summary)),
        # numbers Dagster charts over time (-1: none)
        "live_version": dg.MetadataValue.int(max(live) if live else -1),
        "canary_versions": dg.MetadataValue.int(len(summary.versions_in(graduation.CANARY))),
        "shadow_versions": dg.MetadataValue.int(len(summary.versions_in(graduation.SHADOW))),
        "last_version": dg.MetadataValue.int(last.get("version", -1)),
        "last_gate_accepted": dg.MetadataValue.bool(last.get("gate") == "accepted"),
        "open_alerts": dg.MetadataValue.int(len(summary.alerts)),
        "task_types": dg.MetadataValue.int(len(summary.best)),
        "accepted_events": dg.MetadataValue.int(summary.accepted_events),
        "quarantined_events": dg.MetadataValue.int(summary.quarantined_events),
    }
    if last.get("improvement") is not None:
        metadata["last_improvement"] = dg.MetadataValue.float(last["improvement"])
    if not summary.best.empty:
        metadata["mean_best_agent_score"] = dg.MetadataValue.float(float(summary.best["mean"].mean()))
    if live:
        metadata.update(
            links.mlflow_link_metadata(
                tracking_uri, model_name=registry.REGISTERED_MODEL, version=max(live), prefix="live"
            )
        )
    return metadata


@dg.asset(
    deps=[
        dg.AssetDep("model_versions"),
        dg.AssetDep("graduation_status"),
        dg.AssetDep("agent_alerts"),
        dg.AssetDep("agent_posteriors"),
    ],
    kinds={"mlflow", "duckdb"},
    group_name=GROUP,
    automation_condition=follows_new_data,
    description="Open this first: live, canary and shadow versions, the last gate decision and why, the best "
    "agent per task type and context with 95 % intervals, open alerts and event counts.",
)
def learning_summary(
    lake: LakeResource, mlflow: MlflowResource, autonomy: AutonomyResource
) -> dg.MaterializeResult:
    paths = lake.paths
    alerts = autonomy.alert_store(paths).list(include_acknowledged=False)
    summary = build_summary(paths, mlflow.uri, alerts)
    return dg.MaterializeResult(metadata=summary_metadata(summary, mlflow.uri))


summary_job = dg.define_asset_job(
    "summary_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Refresh learning_summary, the page to open first.",
)
