"""The autonomous loop's actions on the registry and the lake (used by the Dagster assets, jobs and the CLI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd

from learning_pipeline.lib.autonomy import graduation
from learning_pipeline.lib.autonomy.alerts import Alert, AlertStore, raise_and_notify
from learning_pipeline.lib.autonomy.graduation import (
    APPROVED,
    CANDIDATE,
    DEMOTED_TO,
    LIVE,
    PENDING,
    REJECTED,
    SHADOW,
)
from learning_pipeline.lib.learning import cycle, registry
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def versions_frame(tracking_uri: str) -> pd.DataFrame:
    return registry.model_versions_frame(tracking_uri)


def decide_approvals(
    paths: LakePaths,
    tracking_uri: str,
    thresholds: graduation.ApprovalThresholds,
    now: datetime | None = None,
) -> list[dict]:
    """Decide every gate-accepted version that has no approval decision yet.

    Auto-approval on and thresholds met -> approved by `auto-approval` (stage `approved`); otherwise ->
    pending_approval (stage `candidate`). Nothing here changes what serves: only live does.
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
            decision, why = APPROVED, "meets the auto-approval thresholds"
        else:
            reasons = "auto-approval is off" if not thresholds.enabled else "; ".join(failures)
            decision, why = PENDING, f"waits for a person: {reasons}"
        try:
            rec = graduation.record_approval(
                paths, version, decision, "auto-approval", "automatic", why, values, at=now
            )
        except graduation.DecisionConflict:  # another run decided it meanwhile
            continue
        decided.append(rec)
    sync_aliases(paths, tracking_uri)
    return decided


def sync_aliases(paths: LakePaths, tracking_uri: str) -> None:
    """Registry aliases from the stages (@champion = live), then the model_versions table."""
    graduation.set_stage_aliases(tracking_uri, graduation.current_stages(paths))
    cycle.write_model_versions(paths, tracking_uri)


def approve_candidate(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    """A person approves a pending version: stage `approved` (it serves only once a person makes it live)."""
    graduation.require_person(by, reason, "an approval")
    status = graduation.approval_status(paths)
    if status.get(int(version)) != PENDING:
        raise ValueError(
            f"version {version} is not pending approval (status: {status.get(int(version), 'none')})"
        )
    now = _now(now)
    rec = graduation.record_approval(paths, version, APPROVED, by, "human", reason, at=now)
    sync_aliases(paths, tracking_uri)
    return rec


def approve_live(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    """shadow | canary -> live (a person): @champion moves to it, the previous live version retires."""
    rows = graduation.approve_live(paths, version, by, reason, at=_now(now))
    sync_aliases(paths, tracking_uri)
    return rows[-1]


def start_canary(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    rec = graduation.start_canary(paths, version, by, reason, at=_now(now))
    sync_aliases(paths, tracking_uri)
    return rec


def demote(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, now: datetime | None = None
) -> dict:
    """A person moves a version one stage back; a demoted live version hands live back to its predecessor."""
    graduation.require_person(by, reason, "a demotion")
    rows = graduation.demote(paths, version, by, "human", reason, at=_now(now))
    sync_aliases(paths, tracking_uri)
    return rows[0]


def go_live(
    paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str, force: bool = False
) -> dict:
    """Make `version` live whatever its stage (rollback): refused for a version that was rejected or never
    approved unless `force`; always records who and why, and retires the current live version."""
    graduation.require_person(by, reason, "making a version live")
    versions = versions_frame(tracking_uri)
    row = versions[versions["version_number"] == int(version)]
    if row.empty:
        raise ValueError(f"{registry.REGISTERED_MODEL} has no version {version}")
    stage = graduation.current_stages(paths).get(int(version))
    approved = graduation.approval_status(paths).get(int(version)) == APPROVED or stage is not None
    if stage == LIVE:
        raise ValueError(f"version {version} is already live")
    if (row["gate"].iloc[0] != "accepted" or not approved) and not force:
        raise ValueError(
            f"version {version} was {'rejected by the gate' if row['gate'].iloc[0] != 'accepted' else 'never approved'}"
            "; pass --force with a reason to make it live anyway"
        )
    rows = graduation.make_live(paths, version, by, "human (forced)" if force else "human", reason)
    sync_aliases(paths, tracking_uri)
    return rows[-1]


def approve_and_go_live(paths: LakePaths, tracking_uri: str, version: int, by: str, reason: str) -> dict:
    """A person's whole step for a gate-accepted version: approve it (if it waits for approval) and make it
    live. Used by the demo and the benchmark harness, which act as that person."""
    decide_approvals(paths, tracking_uri, graduation.ApprovalThresholds())
    if graduation.approval_status(paths).get(int(version)) == PENDING:
        approve_candidate(paths, tracking_uri, version, by, reason)
    return go_live(paths, tracking_uri, version, by, reason)


def rollback(
    paths: LakePaths,
    tracking_uri: str,
    version: int,
    by: str,
    reason: str,
    force: bool = False,
    dagster_run_id: str | None = None,
) -> dict:
    """Make an earlier version live again (see `go_live`), tag both versions and record a `rollback` event."""
    with registry.tracking(tracking_uri) as client:
        previous = registry.current_champion(client)
    rec = go_live(paths, tracking_uri, version, by, reason, force=force)
    with registry.tracking(tracking_uri) as client:
        name = registry.REGISTERED_MODEL
        client.set_model_version_tag(name, str(version), "rollback_reason", reason)
        client.set_model_version_tag(name, str(version), "rolled_back_by", by)
        if previous is not None:
            client.set_model_version_tag(name, str(previous), "rolled_back_from", "true")
            client.set_model_version_tag(name, str(previous), "rollback_reason", reason)
    cycle.record_learning_event(
        paths,
        "rollback",
        model_version_id=f"{registry.REGISTERED_MODEL}/{version}",
        metrics_before={"champion": previous},
        metrics_after={"champion": int(version), "by": by, "forced": force},
        reason=reason,
        dagster_run_id=dagster_run_id,
        parent_version=previous,
    )
    cycle.write_model_versions(paths, tracking_uri)
    return {
        "version": int(version),
        "previous_champion": previous,
        "by": by,
        "forced": force,
        "reason": reason,
        "stage": rec["to_stage"],
    }


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
    gate = dict(zip(out["version_number"].astype(int), out["gate"], strict=True))
    out["stage"] = out["version_number"].map(
        lambda v: stages.get(int(v)) or (REJECTED if gate[int(v)] != "accepted" else CANDIDATE)
    )
    return out


def _decided(result: dict, decide, *args, **kwargs) -> bool:
    """Apply an automatic decision; False (noted in `result`) when another run decided first."""
    try:
        decide(*args, **kwargs)
        return True
    except graduation.DecisionConflict as error:
        result["unmet"] = f"not moved: {error}"
        return False


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
    """One graduation check: the newest approved version may move to shadow; shadow, canary and live versions
    are compared with live traffic (shadow: logged to MLflow) and demoted one stage on degradation. Returns one
    row per version checked."""
    now = _now(now)
    versions = versions_frame(tracking_uri)
    if versions.empty:
        return []
    stages = graduation.current_stages(paths)
    check = {v for v, s in stages.items() if s in DEMOTED_TO}
    approved = [v for v, s in stages.items() if s == APPROVED]
    if approved:
        check.add(max(approved))
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
        if stage == APPROVED:
            cycles = _cycles_since(paths, row["created_at"])
            ready, unmet = graduation.graduation_check(summary, cycles, criteria)
            result.update(cycles=cycles, unmet="; ".join(unmet))
            if ready and _decided(
                result,
                graduation.record_transition,
                paths,
                version,
                APPROVED,
                SHADOW,
                triggered_by,
                "automatic",
                "graduation criteria met",
                summary,
                at=now,
            ):
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
            if degraded and _decided(
                result, graduation.demote, paths, version, triggered_by, "automatic", why, summary, at=now
            ):
                result["stage"] = DEMOTED_TO[stage]
                result["unmet"] = why
                if store is not None:
                    raise_and_notify(
                        store,
                        Alert(
                            "PERFORMANCE_DEGRADATION",
                            "CRITICAL" if stage == LIVE else "WARNING",
                            f"agent-router v{version} demoted from {stage} to {DEMOTED_TO[stage]}",
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
    sync_aliases(paths, tracking_uri)
    return results
