"""Approval and stages of `agent-router` versions: one state machine per version, one `stage` column.

    candidate -> rejected                     the gate rejected it (or it was never approved)
    candidate -> approved                     auto-approval with its thresholds, or a person
    approved  -> shadow                       automatic, when the graduation criteria hold on live traffic
    shadow    -> canary                       a person: serves `canary_share` of the requests
    shadow | canary -> live                   a person only; the previous live version is retired
    demotion: live -> retired (the previous live version returns to live), canary -> shadow,
              shadow -> approved; automatic on degradation, or a person

Aliases follow the stages and nothing else: @champion is exactly the live version (no live version: no
@champion, the decision service answers from the lake's posteriors), @canary and @shadow the newest
version in those stages. The decision service serves @champion and @canary and scores @shadow.

Approval (table `model_approvals`): a version the eval gate accepted is approved automatically when
auto-approval is on and its metrics meet the thresholds; otherwise it waits for a person
(`pending_approval`). Stage changes (table `graduation_events`) record who or what triggered them and why.
Both tables live in the state store (`lib/storage/state_store.py`). Every decision is one write transaction
that re-reads approvals and stages and refuses what they do not allow (DecisionConflict): of concurrent
decisions about one version exactly one succeeds, and going live retires the live version in the same
transaction, so at most one version is live.
Live traffic of a version = outcome_events from its training cut-off on (data it never saw). For each event
the version's top agent is computed and compared with the agent that actually ran: agreement rate, success
of agreeing vs disagreeing decisions per day. Each check of a shadow version is a run in the MLflow
experiment `agent-router-shadow`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.state_store import StateStore, TableSpec, Tx, open_state_store, publish

APPROVED, PENDING = "approved", "pending_approval"
CANDIDATE, REJECTED, SHADOW, CANARY, LIVE, RETIRED = (
    "candidate",
    "rejected",
    "shadow",
    "canary",
    "live",
    "retired",
)
STAGES = (CANDIDATE, REJECTED, APPROVED, SHADOW, CANARY, LIVE, RETIRED)
DEMOTED_TO = {LIVE: RETIRED, CANARY: SHADOW, SHADOW: APPROVED}
SHADOW_EXPERIMENT = "agent-router-shadow"

# decision: approved / pending_approval; decided_by: "auto-approval" or a person's name; trigger_kind: automatic /
# human; at: the deciding clock (may be injected); recorded_at: the wall clock, the order of rows
APPROVALS_TABLE = TableSpec.parse(
    "model_approvals",
    "id text primary key not null, version int not null, decision text not null, decided_by text not null, "
    "trigger_kind text not null, reason text, metrics text, at timestamp not null, recorded_at timestamp not null",
    order_by="recorded_at, id",
)
GRADUATION_TABLE = TableSpec.parse(
    "graduation_events",
    "id text primary key not null, version int not null, from_stage text, to_stage text not null, triggered_by "
    "text not null, trigger_kind text not null, reason text, metrics text, at timestamp not null, recorded_at "
    "timestamp not null",
    order_by="recorded_at, id",
)


class DecisionConflict(ValueError):
    """A decision that the version's current approval or stage does not allow (another process may have
    decided first)."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _store(paths: LakePaths) -> StateStore:
    store = open_state_store(paths)
    for spec in (APPROVALS_TABLE, GRADUATION_TABLE):
        store.ensure(spec, paths)  # imports the former lake tables once
    return store


def _read(paths: LakePaths, spec: TableSpec) -> pd.DataFrame:
    with _store(paths).read() as tx:
        return spec.select(tx)


def _latest(frame: pd.DataFrame, column: str) -> dict[int, str]:
    """version -> `column` of its latest row."""
    return {int(v): value for v, value in frame.groupby("version")[column].last().items()}


class _Decisions:
    """Approvals and stages as they are inside one write transaction. Every decision about versions takes turns
    on one writer lock (that of graduation_events), so what a decision checks here still holds at its commit."""

    def __init__(self, paths: LakePaths, tx: Tx):
        self.paths, self.tx = paths, tx
        self.events = GRADUATION_TABLE.select(tx)
        approvals = APPROVALS_TABLE.select(tx)
        self.stages = _latest(self.events, "to_stage")
        self.approvals = _latest(approvals, "decision")
        stamps = [frame["recorded_at"].max() for frame in (self.events, approvals) if len(frame)]
        self._clock = max(stamps).to_pydatetime() if stamps else None
        self._changed: set[str] = set()

    def add(
        self, spec: TableSpec, version: int, row: dict, metrics: dict | None, at: datetime | None
    ) -> dict:
        """One row of `spec` for `version`: a new id, the metrics as JSON, the deciding clock (`at`) and the
        wall clock (`recorded_at`, strictly increasing: the order of the decisions)."""
        recorded = datetime.now(UTC)
        if self._clock is not None and recorded <= self._clock:
            recorded = self._clock + timedelta(microseconds=1)
        self._clock = recorded
        row = {
            "id": uuid.uuid4().hex,
            "version": int(version),
            **row,
            "metrics": json.dumps(
                metrics or {}, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)
            ),
            "at": _utc(at or recorded),
            "recorded_at": recorded,
        }
        spec.insert(self.tx, [row])
        if spec.name not in self._changed:
            self._changed.add(spec.name)
            self.tx.after_commit(lambda tx: publish(tx, spec, self.paths))
        return row

    def move(
        self,
        version: int,
        allowed_from: Collection[str],
        to_stage: str,
        by: str,
        kind: str,
        reason: str,
        metrics: dict | None = None,
        at: datetime | None = None,
        refusal: str = "",
    ) -> list[dict]:
        """`version` to `to_stage` if its current stage (none recorded: candidate) is in `allowed_from`, else
        DecisionConflict. Going live retires the live version in the same transaction: one live at most."""
        version = int(version)
        stage = self.stages.get(version, CANDIDATE)
        if stage not in allowed_from:
            raise DecisionConflict(
                f"version {version} is in stage {stage}; {refusal or f'it cannot move to {to_stage}'}"
            )
        rows = []
        if to_stage == LIVE:
            for other in [v for v, s in self.stages.items() if s == LIVE and v != version]:
                rows += self.move(other, (LIVE,), RETIRED, by, kind, f"replaced by v{version}", at=at)
        row = {
            "from_stage": stage,
            "to_stage": to_stage,
            "triggered_by": by,
            "trigger_kind": kind,
            "reason": reason,
        }
        rows.append(self.add(GRADUATION_TABLE, version, row, metrics, at))
        self.stages[version] = to_stage
        return rows


@contextmanager
def _deciding(paths: LakePaths) -> Iterator[_Decisions]:
    with _store(paths).write(GRADUATION_TABLE.name) as tx:
        yield _Decisions(paths, tx)


# ---- approval ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalThresholds:
    enabled: bool = False  # auto-approval on/off; off: every accepted version waits for a person
    min_success_rate: float = 0.5  # candidate's estimated value (expected reward) on the held-out days
    min_samples: int = 200  # held-out events behind the evaluation
    min_improvement: float = 0.02
    require_improvement: bool = True  # must beat the version it was compared with


def approval_check(row: dict, thresholds: ApprovalThresholds) -> tuple[bool, list[str], dict]:
    """Does a gate-accepted version (a model_versions row) meet the auto-approval thresholds?"""
    metrics = json.loads(row.get("metrics") or "{}")
    score = float(metrics.get("candidate_score", float("nan")))
    samples = int(float(metrics.get("samples", 0)))
    improvement = row.get("improvement")
    improvement = float("nan") if improvement is None or pd.isna(improvement) else float(improvement)
    failures = []
    if not score >= thresholds.min_success_rate:
        failures.append(f"success rate {score:.3f} < {thresholds.min_success_rate}")
    if samples < thresholds.min_samples:
        failures.append(f"samples {samples} < {thresholds.min_samples}")
    if not improvement >= thresholds.min_improvement:
        failures.append(f"improvement {improvement:+.4f} < {thresholds.min_improvement}")
    if thresholds.require_improvement and not improvement > 0:
        failures.append("no improvement over the current version")
    values = {"success_rate": score, "samples": samples, "improvement": improvement}
    return not failures, failures, values


def read_approvals(paths: LakePaths) -> pd.DataFrame:
    return _read(paths, APPROVALS_TABLE)


def approval_status(paths: LakePaths) -> dict[int, str]:
    """version -> its latest approval decision."""
    return _latest(read_approvals(paths), "decision")


def record_approval(
    paths: LakePaths,
    version: int,
    decision: str,
    decided_by: str,
    trigger_kind: str,
    reason: str,
    metrics: dict | None = None,
    at: datetime | None = None,
) -> dict:
    """Record an approval decision: pending only for a version with no decision yet, approved only for a
    version with none or pending (then the version also moves candidate -> approved, in the same transaction).
    DecisionConflict otherwise: of concurrent approvals of one version exactly one succeeds."""
    if decision not in (APPROVED, PENDING):
        raise ValueError(f"decision must be {APPROVED} or {PENDING}")
    with _deciding(paths) as d:
        before = d.approvals.get(int(version))
        if decision == PENDING and before is not None:
            raise DecisionConflict(f"version {version} already has the approval decision {before}")
        if before == APPROVED:
            raise DecisionConflict(f"version {version} is not pending approval (status: {before})")
        row = {"decision": decision, "decided_by": decided_by, "trigger_kind": trigger_kind, "reason": reason}
        rec = d.add(APPROVALS_TABLE, version, row, metrics, at)
        if decision == APPROVED:
            d.move(
                version, (CANDIDATE,), APPROVED, decided_by, trigger_kind, f"approved: {reason}", metrics, at
            )
    return rec


# ---- graduation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraduationCriteria:
    min_cycles: int = 3  # learning cycles evaluated since the version was registered (itself included)
    min_samples: int = 300  # agreeing live decisions
    min_success_rate: float = 0.6  # success rate of agreeing live decisions over the whole period
    consistency_window: int = 3  # the last N days each meet min_success_rate
    max_drawdown: float = 0.15  # peak-to-trough relative drop of the rolling success rate
    rolling_days: int = 2
    min_daily_samples: int = 20  # a day with fewer agreeing decisions is not judged
    demotion_drop: float = 0.10  # shadow/live -> learning: last window below min_success_rate * (1 - drop)


def read_graduation_events(paths: LakePaths) -> pd.DataFrame:
    return _read(paths, GRADUATION_TABLE)


def current_stages(paths: LakePaths) -> dict[int, str]:
    return _latest(read_graduation_events(paths), "to_stage")


def record_transition(
    paths: LakePaths,
    version: int,
    from_stage: str | None,
    to_stage: str,
    triggered_by: str,
    trigger_kind: str,
    reason: str,
    metrics: dict | None = None,
    at: datetime | None = None,
) -> dict:
    """Move `version` from `from_stage` (None: never moved, i.e. candidate) to `to_stage`, checked against
    the current stage inside the transaction (DecisionConflict if it differs); going live retires the live
    version in the same transaction."""
    if to_stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}")
    if not triggered_by:
        raise ValueError("a transition needs who or what triggered it")
    expected = from_stage or CANDIDATE
    with _deciding(paths) as d:
        rows = d.move(
            version,
            (expected,),
            to_stage,
            triggered_by,
            trigger_kind,
            reason,
            metrics,
            at,
            refusal=f"the transition expected {expected}",
        )
    return rows[-1]


def approve_live(
    paths: LakePaths, version: int, by: str, reason: str, at: datetime | None = None
) -> list[dict]:
    """shadow | canary -> live: the only way to live, an explicit human decision. Retires the live one."""
    require_person(by, reason, "approving a version for live")
    refusal = "only a version in shadow or canary can go live"
    with _deciding(paths) as d:
        return d.move(version, (SHADOW, CANARY), LIVE, by, "human", reason, at=at, refusal=refusal)


def make_live(paths: LakePaths, version: int, by: str, trigger_kind: str, reason: str) -> list[dict]:
    """Any stage but live -> live (a person's rollback; the caller checks approval and gate first)."""
    with _deciding(paths) as d:
        allowed = [s for s in STAGES if s != LIVE]
        return d.move(version, allowed, LIVE, by, trigger_kind, reason, refusal="it is already live")


def start_canary(paths: LakePaths, version: int, by: str, reason: str, at: datetime | None = None) -> dict:
    """shadow -> canary (a person): the version serves a share of the requests beside live."""
    require_person(by, reason, "starting a canary")
    refusal = "only a version in shadow can canary"
    with _deciding(paths) as d:
        return d.move(version, (SHADOW,), CANARY, by, "human", reason, at=at, refusal=refusal)[-1]


def demote(
    paths: LakePaths,
    version: int,
    by: str,
    trigger_kind: str,
    reason: str,
    metrics: dict | None = None,
    at: datetime | None = None,
) -> list[dict]:
    """One step back (see DEMOTED_TO). A demoted live version hands live back to the version it replaced."""
    with _deciding(paths) as d:
        stage = d.stages.get(int(version), CANDIDATE)
        previous = _previous_live(d.events, version) if stage == LIVE else None
        refusal = "only live, canary or shadow demote"
        rows = d.move(
            version, DEMOTED_TO, DEMOTED_TO.get(stage, ""), by, trigger_kind, reason, metrics, at, refusal
        )
        if previous is not None:
            allowed = [s for s in STAGES if s != LIVE]
            rows += d.move(previous, allowed, LIVE, by, trigger_kind, f"v{version} demoted: {reason}", at=at)
    return rows


def previous_live(paths: LakePaths, version: int) -> int | None:
    """The version that was live right before `version` went live (retired since), if any."""
    return _previous_live(read_graduation_events(paths), version)


def _previous_live(events: pd.DataFrame, version: int) -> int | None:
    went_live = events[(events["version"] == int(version)) & (events["to_stage"] == LIVE)]
    if went_live.empty:
        return None
    before = events[
        (events["recorded_at"] <= went_live["recorded_at"].iloc[-1]) & (events["from_stage"] == LIVE)
    ]
    before = before[(before["to_stage"] == RETIRED) & (before["version"] != int(version))]
    return int(before["version"].iloc[-1]) if len(before) else None


def require_person(by: str, reason: str, what: str) -> None:
    """A person's decision names who (`by`) and why (`reason`)."""
    if not by or not by.strip() or not reason or not reason.strip():
        raise ValueError(f"{what} needs --by and --reason")


def live_traffic(con: duckdb.DuckDBPyConnection, policy, start: date, end: date) -> pd.DataFrame:
    """Per day from `start` to `end` (inclusive): the version's top agent vs the agent that actually ran.

    Columns: day, n, n_agree, agreement_rate, success_agree, success_disagree.
    """
    keys = tuple(policy.context_keys)
    ctx = "".join(f", json_extract_string(context, '{k}') AS \"{k}\"" for k in keys)
    events = con.execute(
        f"""SELECT cast(event_date AS DATE) AS day, coalesce(task_type, action_type, 'unspecified') AS task_type
                   {ctx}, agent_name, (status = 'success')::INT AS ok
            FROM outcome_events WHERE cast(event_date AS DATE) BETWEEN ? AND ?""",
        [start, end],
    ).df()
    columns = ["day", "n", "n_agree", "agreement_rate", "success_agree", "success_disagree"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    scores = policy.scores(events)
    known = policy.known_agent_mask(events["task_type"].to_numpy())
    masked = np.where(known, scores, -np.inf)
    top = np.asarray(policy.agents, dtype=object)[np.argmax(masked, axis=1)]
    events["agree"] = (top == events["agent_name"].to_numpy(dtype=object)) & known.any(axis=1)
    events["ok_agree"] = events["ok"].where(events["agree"])
    events["ok_disagree"] = events["ok"].where(~events["agree"])
    out = events.groupby("day", as_index=False).agg(
        n=("ok", "size"),
        n_agree=("agree", "sum"),
        success_agree=("ok_agree", "mean"),
        success_disagree=("ok_disagree", "mean"),
    )
    out["agreement_rate"] = out["n_agree"] / out["n"]
    return out[columns].sort_values("day").reset_index(drop=True)


def summarize(daily: pd.DataFrame, criteria: GraduationCriteria) -> dict[str, Any]:
    if daily.empty:
        return {"days": 0, "n": 0, "n_agree": 0}
    n_agree = int(daily["n_agree"].sum())
    ok_agree = float((daily["success_agree"].fillna(0) * daily["n_agree"]).sum())
    n_dis = int((daily["n"] - daily["n_agree"]).sum())
    ok_dis = float((daily["success_disagree"].fillna(0) * (daily["n"] - daily["n_agree"])).sum())
    judged = daily[daily["n_agree"] >= criteria.min_daily_samples]
    # rolling success rate of agreeing decisions (weighted by decisions) and its max drawdown
    w = judged["n_agree"].rolling(criteria.rolling_days, min_periods=1).sum()
    s = (judged["success_agree"] * judged["n_agree"]).rolling(criteria.rolling_days, min_periods=1).sum()
    rolling = (s / w).to_numpy(float)
    peak = np.maximum.accumulate(rolling) if len(rolling) else rolling
    drawdown = float(np.max((peak - rolling) / np.where(peak > 0, peak, 1))) if len(rolling) else 0.0
    last = judged.tail(criteria.consistency_window)
    return {
        "days": int(len(daily)),
        "judged_days": int(len(judged)),
        "n": int(daily["n"].sum()),
        "n_agree": n_agree,
        "agreement_rate": n_agree / max(int(daily["n"].sum()), 1),
        "success_agree": ok_agree / n_agree if n_agree else float("nan"),
        "success_disagree": ok_dis / n_dis if n_dis else float("nan"),
        "max_drawdown": drawdown,
        "last_days_success": [round(float(x), 4) for x in last["success_agree"]],
        "last_day_success": float(last["success_agree"].iloc[-1]) if len(last) else float("nan"),
    }


def graduation_check(summary: dict, cycles: int, criteria: GraduationCriteria) -> tuple[bool, list[str]]:
    """learning -> shadow: every criterion must hold; returns (ready, the unmet criteria)."""
    unmet = []
    if cycles < criteria.min_cycles:
        unmet.append(f"cycles {cycles} < {criteria.min_cycles}")
    if summary.get("n_agree", 0) < criteria.min_samples:
        unmet.append(f"agreeing decisions {summary.get('n_agree', 0)} < {criteria.min_samples}")
    rate = summary.get("success_agree", float("nan"))
    if not rate >= criteria.min_success_rate:
        unmet.append(f"success rate {rate:.3f} < {criteria.min_success_rate}")
    last = summary.get("last_days_success", [])
    if len(last) < criteria.consistency_window or min(last) < criteria.min_success_rate:
        unmet.append(
            f"not consistent: last {criteria.consistency_window} days {last} not all >= "
            f"{criteria.min_success_rate}"
        )
    if summary.get("max_drawdown", 0.0) > criteria.max_drawdown:
        unmet.append(f"max drawdown {summary['max_drawdown']:.3f} > {criteria.max_drawdown}")
    return not unmet, unmet


def demotion_check(summary: dict, criteria: GraduationCriteria) -> tuple[bool, str]:
    """shadow/live -> learning when the last judged day fell well below the bar, or the drawdown is too deep."""
    floor = criteria.min_success_rate * (1 - criteria.demotion_drop)
    last = summary.get("last_day_success", float("nan"))
    if summary.get("judged_days", 0) and last < floor:
        return True, f"degraded: last day's success rate {last:.3f} < {floor:.3f}"
    if summary.get("max_drawdown", 0.0) > criteria.max_drawdown:
        return True, f"degraded: drawdown {summary['max_drawdown']:.3f} > {criteria.max_drawdown}"
    return False, ""


def set_stage_aliases(tracking_uri: str, stages: dict[int, str], name: str | None = None) -> None:
    """@champion = the live version, @canary / @shadow = the newest version in that stage; removed when none."""
    from learning_pipeline.lib.learning import registry

    name = name or registry.REGISTERED_MODEL
    with registry.tracking(tracking_uri) as client:
        try:
            aliases = client.get_registered_model(name).aliases
        except Exception:  # no version registered yet
            return
        for stage, alias in ((LIVE, registry.CHAMPION), (CANARY, CANARY), (SHADOW, SHADOW), (LIVE, LIVE)):
            versions = [v for v, s in stages.items() if s == stage]
            if versions:
                if aliases.get(alias) != str(max(versions)):
                    client.set_registered_model_alias(name, alias, str(max(versions)))
            elif alias in aliases:
                client.delete_registered_model_alias(name, alias)


def log_shadow_comparison(
    tracking_uri: str,
    version: int,
    daily: pd.DataFrame,
    summary: dict,
    tags: dict[str, str] | None = None,
    artifact_location: str | None = None,
) -> str:
    """One MLflow run in `agent-router-shadow`: agreement and success of agreeing vs disagreeing decisions."""
    import tempfile
    from pathlib import Path

    import mlflow

    from learning_pipeline.lib.learning import registry

    with registry.tracking(tracking_uri) as client, tempfile.TemporaryDirectory() as tmp:
        exp_id = registry.ensure_experiment(client, SHADOW_EXPERIMENT, artifact_location)
        with mlflow.start_run(
            experiment_id=exp_id,
            run_name=f"shadow-v{version}",
            tags={"model_version": str(version), **(tags or {})},
        ) as run:
            metrics = {
                k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and np.isfinite(v)
            }
            mlflow.log_metrics(metrics)
            path = Path(tmp) / "shadow_daily.csv"
            daily.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
            for step, row in enumerate(daily.itertuples()):
                values = {"daily_agreement_rate": float(row.agreement_rate)}
                if pd.notna(row.success_agree):
                    values["daily_success_agree"] = float(row.success_agree)
                mlflow.log_metrics(values, step=step)
        return run.info.run_id
