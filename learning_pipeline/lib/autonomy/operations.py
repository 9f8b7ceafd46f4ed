"""The autonomous loop's actions on the registry and the lake (used by the Dagster assets, jobs and the CLI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd

from learning_pipeline.lib.autonomy import graduation
from learning_pipeline.lib.autonomy.alerts import Alert, AlertStore, raise_and_notify
from learning_pipeline.lib.autonomy.graduation import APPROVED, LEARNING, LIVE, PENDING, SHADOW
from learning_pipeline.lib.learning import cycle, registry
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def versions_frame(tracking_uri: str) -> pd.DataFrame:
    return registry.model_versions_frame(tracking_uri)


def _champion(tracking_uri: str) -> int | None:
    with registry.tracking(tracking_uri) as client:
        return registry.current_champion(client)


def decide_approvals(
    paths: LakePaths,
    tracking_uri: str,
    thresholds: graduation.ApprovalThresholds,
    now: datetime | None = None,
) -> list[dict]:
    """Decide every gate-accepted version that has no approval decision yet; keep @champion on an approved one.

    Auto-approval on and thresholds met -> approved by `auto-approval` (enters graduation as `learning`);
    otherwise -> pending_approval, and @champion goes back to the newest approved version (none: removed).
    """
    now = _now(now)
    versions = versions_frame(tracking_uri)
    status = graduation.approval_status(paths)
    decided = []
    for row in versions[versions["gate"] == "accepted"].to_dict("records"):
        version = int(row["version_number"])
        if version in status:
            continue
        passed, failures, values = graduation.approval_check(row, thresholds)
        if thresholds.enabled and passed:
            rec = graduation.record_approval(
                paths,
                version,
                APPROVED,
                "auto-approval",
                "automatic",
                "meets the auto-approval thresholds",
                values,
                at=now,
            )
            graduation.record_transition(
                paths,
                version,
                None,
                LEARNING,
                "auto-approval",
                "automatic",
                "approved: starts learning",
                values,
                at=now,
            )
        else:
            why = "auto-approval is off" if not thresholds.enabled else "; ".join(failures)
            rec = graduation.record_approval(
                paths,
                version,
                PENDING,
                "auto-approval",
                "automatic",
                f"waits for a person: {why}",
                values,
                at=now,
            )
        status[version] = rec["decision"]
        decided.append(rec)
    _enforce_champion(paths, tracking_uri, status)
    return decided


def _enforce_champion(paths: LakePaths, tracking_uri: str, status: dict[int, str]) -> None:
    champion = _champion(tracking_uri)
    if champion is None or status.get(champion, APPROVED) == APPROVED:
        return
    approved = [v for v, d in status.items() if d == APPROVED and v < champion]
    graduation.set_champion(tracking_uri, max(approved) if approved else None)
    cycle.write_model_versions(paths, tracking_uri)


def approve_candidate(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    """A person approves a pending version: it becomes @champion and starts learning."""
    if not by or not by.strip() or not reason or not reason.strip():
        raise ValueError("an approval needs --by and --reason")
    status = graduation.approval_status(paths)
    if status.get(int(version)) != PENDING:
        raise ValueError(
            f"version {version} is not pending approval (status: {status.get(int(version), 'none')})"
        )
    now = _now(now)
    rec = graduation.record_approval(paths, version, APPROVED, by, "human", reason, at=now)
    graduation.record_transition(paths, version, None, LEARNING, by, "human", f"approved: {reason}", at=now)
    graduation.set_champion(tracking_uri, int(version))
    cycle.write_model_versions(paths, tracking_uri)
    return rec


def approve_live(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    rec = graduation.approve_live(paths, version, by, reason, at=_now(now))
    graduation.set_stage_aliases(tracking_uri, graduation.current_stages(paths))
    cycle.write_model_versions(paths, tracking_uri)
    return rec


def demote(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    stage = graduation.current_stages(paths).get(int(version))
    if stage not in (SHADOW, LIVE):
        raise ValueError(
            f"version {version} is in stage {stage or 'none'}; only shadow or live can be demoted"
        )
    rec = graduation.record_transition(paths, version, stage, LEARNING, by, "human", reason, at=_now(now))
    graduation.set_stage_aliases(tracking_uri, graduation.current_stages(paths))
    cycle.write_model_versions(paths, tracking_uri)
    return rec


def _cycles_since(paths: LakePaths, created_at) -> int:
    with lake_connection(paths) as con:
        try:
            return int(
                con.execute(
                    "SELECT count(*) FROM learning_events WHERE event_type LIKE 'evaluation_%' AND created_at >= ?",
                    [pd.Timestamp(created_at).to_pydatetime()],
                ).fetchone()[0]
            )
        except duckdb.CatalogException:  # no learning_events table yet
            return 0


def status_frame(paths: LakePaths, tracking_uri: str) -> pd.DataFrame:
    """One row per registered version: gate, approval, stage, aliases."""
    versions = versions_frame(tracking_uri)
    approvals = graduation.approval_status(paths)
    stages = graduation.current_stages(paths)
    out = versions[["version_number", "status", "gate", "improvement", "aliases"]].copy()
    out["approval"] = out["version_number"].map(lambda v: approvals.get(int(v), ""))
    out["stage"] = out["version_number"].map(lambda v: stages.get(int(v), ""))
    return out


def run_graduation(
    paths: LakePaths,
    tracking_uri: str,
    criteria: graduation.GraduationCriteria,
    triggered_by: str,
    now: datetime | None = None,
    store: AlertStore | None = None,
    webhook_url: str | None = None,
    artifact_location: str | None = None,
    log_shadow: bool = True,
) -> list[dict]:
    """One graduation check: the champion in `learning` may move to shadow; shadow/live versions are compared
    with live traffic (shadow: logged to MLflow) and demoted on degradation. Returns one row per version checked."""
    now = _now(now)
    versions = versions_frame(tracking_uri)
    if versions.empty:
        return []
    stages = graduation.current_stages(paths)
    champion = _champion(tracking_uri)
    check = {v for v, s in stages.items() if s in (SHADOW, LIVE)}
    if champion is not None and stages.get(champion) == LEARNING:
        check.add(champion)
    results = []
    for version in sorted(check):
        row = versions[versions["version_number"] == version].iloc[0]
        params = json.loads(row["parameters"] or "{}")
        start = pd.Timestamp(params.get("cutoff") or row["created_at"]).date()
        policy = registry.load_policy(tracking_uri, version)
        with lake_connection(paths) as con:
            daily = graduation.live_traffic(con, policy, start, now.date())
        summary = graduation.summarize(daily, criteria)
        stage = stages[version]
        result = {"version": version, "stage_before": stage, "stage": stage, **summary}
        if stage == LEARNING:
            cycles = _cycles_since(paths, row["created_at"])
            ready, unmet = graduation.graduation_check(summary, cycles, criteria)
            result.update(cycles=cycles, unmet="; ".join(unmet))
            if ready:
                graduation.record_transition(
                    paths,
                    version,
                    LEARNING,
                    SHADOW,
                    triggered_by,
                    "automatic",
                    "graduation criteria met",
                    summary,
                    at=now,
                )
                result["stage"] = SHADOW
                if store is not None:
                    raise_and_notify(
                        store,
                        Alert(
                            "GRADUATION_READY",
                            "INFO",
                            f"agent-router v{version} graduated to shadow",
                            f"v{version} met the graduation criteria (success {summary['success_agree']:.3f} on "
                            f"{summary['n_agree']} agreeing decisions); it runs in shadow and needs a human approval "
                            f"to go live: learning-pipeline graduation approve {version} --by NAME --reason ...",
                            dedup_key=f"GRADUATION_READY:{version}",
                            model_version=version,
                            metric="success_agree",
                            value=summary["success_agree"],
                            threshold=criteria.min_success_rate,
                            source=triggered_by,
                        ),
                        webhook_url,
                        now=now,
                    )
        else:
            if stage == SHADOW and log_shadow:
                result["mlflow_run_id"] = graduation.log_shadow_comparison(
                    tracking_uri, version, daily, summary, {"triggered_by": triggered_by}, artifact_location
                )
            degraded, why = graduation.demotion_check(summary, criteria)
            if degraded:
                graduation.record_transition(
                    paths, version, stage, LEARNING, triggered_by, "automatic", why, summary, at=now
                )
                result["stage"] = LEARNING
                result["unmet"] = why
                if store is not None:
                    raise_and_notify(
                        store,
                        Alert(
                            "PERFORMANCE_DEGRADATION",
                            "CRITICAL" if stage == LIVE else "WARNING",
                            f"agent-router v{version} demoted from {stage} to learning",
                            why,
                            dedup_key=f"DEMOTION:{version}:{stage}",
                            model_version=version,
                            metric="success_agree",
                            value=summary.get("last_day_success"),
                            threshold=criteria.min_success_rate,
                            source=triggered_by,
                        ),
                        webhook_url,
                        now=now,
                    )
        results.append(result)
    graduation.set_stage_aliases(tracking_uri, graduation.current_stages(paths))
    cycle.write_model_versions(paths, tracking_uri)
    return results
