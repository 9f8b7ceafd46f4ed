"""One learning cycle over the lake: train a candidate up to a cut-off, evaluate it after, log, register.

Time split (whole UTC days, the partition grain):
    training window   [cutoff - window_days, cutoff)      -> posteriors (+ optional contextual model)
    held-out window   [cutoff, cutoff + eval_days)        -> off-policy evaluation of candidate vs champion
For a daily partition D the cycle uses cutoff = D - eval_days + 1, i.e. it evaluates on the partition's
day (and the days before it when eval_days > 1) and trains on the window before.

The contextual model (scikit-learn logistic regression on one-hot task_type, context keys, agent and the
agent's interactions with each of them) is fitted on
the first part of the training window and kept only if its log loss on the last `validation_days` of the
window beats the posteriors fitted on the same part; then it is refitted on the whole window.

A window whose held-out days have no events is skipped, not failed (`skip_reason`, `NoHeldOutEvents`):
nothing is trained, evaluated or registered, and a `cycle_skipped` learning event records the reason.

Tables kept in the lake (Parquet, queryable with `warehouse.lake_connection`):
    lake/model_versions/data.parquet        rewritten from the MLflow registry after every change
    lake/learning_events/<time>-<id>.parquet one file per learning event (evaluation, rollback)
"""

from __future__ import annotations

import inspect
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from learning_pipeline.lib.bandit import contexts, thompson
from learning_pipeline.lib.bandit.policy import (
    DEFAULT_CONTEXT_KEYS,
    CycleEvaluation,
    RoutingPolicy,
    evaluate_candidate,
    fit_contextual_model,
    weighted_log_loss,
)
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.data import (
    daily_from_cells,
    decision_join_stats,
    held_out_events,
    joint_cells,
    outcome_stream,
    reward_components,
    reward_evidence,
    reward_vars,
)
from learning_pipeline.lib.storage.lake import LakePaths, new_batch_name, write_parquet_atomic

LEARNING_EVENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("model_version_id", pa.string()),
        pa.field(
            "event_type", pa.string(), nullable=False
        ),  # evaluation_accepted / evaluation_rejected / cycle_skipped / rollback
        pa.field("batch_size", pa.int64()),
        pa.field("samples_processed", pa.int64()),
        pa.field("metrics_before", pa.string()),
        pa.field("metrics_after", pa.string()),
        pa.field("improvement", pa.float64()),
        pa.field("duration_ms", pa.float64()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("partition_key", pa.string()),
        pa.field("dagster_run_id", pa.string()),
        pa.field("mlflow_run_id", pa.string()),
        pa.field("parent_version", pa.int64()),
    ]
)


_EVALUATE_PARAMETERS = frozenset(inspect.signature(evaluate_candidate).parameters)


@dataclass
class CycleConfig:
    alpha0: float = 1.0
    beta0: float = 1.0
    half_life_days: float | None = None
    window_days: int = 28
    eval_days: int = 1
    context_keys: tuple[str, ...] = DEFAULT_CONTEXT_KEYS
    # events a context bucket (joint, then single key) needs to answer for a request; fewer: the next, broader
    # level answers (lib/bandit/recommender.py). Kept in the version's params.
    min_context_evidence: float = contexts.DEFAULT_MIN_EVIDENCE
    contextual_model: bool = True
    validation_days: int = 2
    min_validation_gain: float = 0.001  # log-loss improvement the contextual model needs
    reward_rule: str = "graded"
    # penalty weights per task type, "*" the default row: {"*": {"cost": per USD, "latency": per second}}
    # (dbt_like_sql/macros/reward.sql); empty: no penalties, the reward is the rule's
    reward_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    n_bootstrap: int = 500
    seed: int = 0
    # the eval gate (rules in lib/bandit/gate.py): the lower bound of the paired interval of the improvement
    # must exceed max(0, min_relative_improvement x the baseline's value)
    min_relative_improvement: float = 0.01
    max_regression: float = 0.01  # the interval may not reach a regression larger than this (absolute)
    min_improvement: float = 0.0  # optional absolute floor on the point estimate (0: off)
    min_events: int = 50  # events contributing to the gate's estimate
    min_effective_sample_size: float = 30.0  # Kish ESS of the gate estimator's weights
    max_weight: float | None = 100.0  # importance weights are clipped to this for IPS/SNIPS/DR
    min_propensity_coverage: float = 0.95
    eval_top_k: int = 3  # length of the served top-k list replayed per policy (top3_hit_rate, top3_replay)
    # > 0: a served version keeps learning from the outcomes posted to the service, in epochs of this
    # many seconds, and the gate replays exactly that (lib/bandit/online.py); 0: versions are frozen
    online_epoch_seconds: float = 0.0

    def __post_init__(self):
        self.context_keys = tuple(self.context_keys)
        self.reward_weights = {str(t): dict(w) for t, w in self.reward_weights.items()}
        reward_vars(self.reward_rule, self.reward_weights)  # raises on a bad rule or weight
        if self.min_context_evidence < 0:
            raise ValueError("min_context_evidence must be >= 0")
        if self.window_days < 1 or self.eval_days < 1:
            raise ValueError("window_days and eval_days must be >= 1")

    def params(self) -> dict[str, Any]:
        out = asdict(self)
        out["context_keys"] = list(self.context_keys)
        return out


@dataclass
class Window:
    train_start: date
    cutoff: date
    eval_end: date  # inclusive

    @classmethod
    def for_partition(cls, partition: str | date, config: CycleConfig) -> Window:
        day = date.fromisoformat(partition) if isinstance(partition, str) else partition
        cutoff = day - timedelta(days=config.eval_days - 1)
        return cls(cutoff - timedelta(days=config.window_days), cutoff, day)

    def params(self) -> dict[str, str]:
        return {
            "train_start": self.train_start.isoformat(),
            "cutoff": self.cutoff.isoformat(),
            "eval_end": self.eval_end.isoformat(),
        }


class NoHeldOutEvents(ValueError):
    """The held-out window has no events: there is nothing to evaluate (the cycle is skipped, not failed)."""


def _days(window: Window) -> str:
    start, end = window.cutoff.isoformat(), window.eval_end.isoformat()
    return start if start == end else f"{start}..{end}"


def skip_reason(con, window: Window) -> str | None:
    """Why a cycle for this window has nothing to do (no held-out events), or None; one count in DuckDB."""
    try:
        n = con.execute(
            "SELECT count(*) FROM outcome_events WHERE cast(event_date AS DATE) BETWEEN ? AND ?",
            [window.cutoff, window.eval_end],
        ).fetchone()[0]
    except duckdb.CatalogException:  # no outcome_events table at all
        n = 0
    return None if n else f"no held-out events on {_days(window)}: nothing to evaluate"


def record_skip(
    paths: LakePaths,
    partition: str,
    reason: str,
    dagster_run_id: str | None = None,
    started: float | None = None,
) -> Path:
    """A `cycle_skipped` learning event (no version registered) with its reason."""
    return record_learning_event(
        paths,
        "cycle_skipped",
        samples=0,
        duration_ms=(time.perf_counter() - started) * 1000 if started is not None else None,
        reason=reason,
        partition_key=partition,
        dagster_run_id=dagster_run_id,
    )


def _posteriors(daily: pd.DataFrame, config: CycleConfig, as_of: date) -> pd.DataFrame:
    return thompson.compute_posteriors(
        reward_evidence(daily),
        alpha0=config.alpha0,
        beta0=config.beta0,
        half_life_days=config.half_life_days,
        as_of=as_of,
        n_samples=500,
        seed=config.seed,
    )


@dataclass
class TrainedCandidate:
    policy: RoutingPolicy
    daily: pd.DataFrame  # the training window's daily aggregates
    held_out_daily: pd.DataFrame  # the held-out days' (never trained on; plotted)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def success_by_day(self) -> pd.DataFrame:
        """Daily success per agent over the training window and the held-out days: what the plot shows."""
        return daily_success(pd.concat([self.daily, self.held_out_daily]))


def train_candidate(con, window: Window, config: CycleConfig) -> TrainedCandidate:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    last_train_day = window.cutoff - timedelta(days=1)
    cells = joint_cells(
        con,
        window.train_start,
        last_train_day,
        config.context_keys,
        config.reward_rule,
        config.reward_weights,
    )
    daily = daily_from_cells(cells, config.context_keys)
    timings["train_aggregate"] = (time.perf_counter() - t0) * 1000
    if daily.empty:
        raise ValueError(f"no events in the training window {window.train_start}..{last_train_day}")
    t1 = time.perf_counter()
    posteriors = _posteriors(daily, config, last_train_day)
    timings["posteriors"] = (time.perf_counter() - t1) * 1000
    agents = tuple(sorted(set(posteriors["agent_name"].astype(str))))
    training_samples = int(
        daily.loc[(daily["task_type"] != "*") & (daily["context_key"] == "*"), "n_events"].sum()
    )
    params = {
        **config.params(),
        **window.params(),
        "training_samples": training_samples,
        "reward_components": reward_components(cells),  # the training window's, logged as MLflow metrics
    }
    policy = RoutingPolicy(posteriors, agents, config.context_keys, params=params)

    if config.contextual_model:
        t2 = time.perf_counter()
        policy = _maybe_contextual(cells, window, config, daily, policy)
        timings["contextual_model"] = (time.perf_counter() - t2) * 1000
    held_out = joint_cells(
        con, window.cutoff, window.eval_end, config.context_keys, config.reward_rule, config.reward_weights
    )
    return TrainedCandidate(policy, daily, daily_from_cells(held_out, config.context_keys), timings)


def _maybe_contextual(
    cells: pd.DataFrame, window: Window, config: CycleConfig, daily: pd.DataFrame, policy: RoutingPolicy
):
    split = window.cutoff - timedelta(days=config.validation_days)
    if split <= window.train_start:
        policy.validation = {"skipped": 1.0}
        return policy
    event_date = pd.to_datetime(cells["event_date"]).dt.date
    fit_cells, val_cells = cells[event_date < split], cells[event_date >= split]
    days = pd.to_datetime(daily["event_date"]).dt.date
    early = daily[days < split]
    if fit_cells.empty or val_cells.empty or early.empty:
        policy.validation = {"skipped": 1.0}
        return policy
    key_cols = ["task_type", *config.context_keys, "agent_name"]
    val = val_cells.groupby(key_cols, dropna=False, as_index=False)[["n", "reward_sum"]].sum()
    fit = fit_cells.groupby(key_cols, dropna=False, as_index=False)[["n", "reward_sum"]].sum()
    early_policy = RoutingPolicy(
        _posteriors(early, config, split - timedelta(days=1)),
        policy.agents,
        config.context_keys,
        params=policy.params,
    )
    agent_pos = {a: i for i, a in enumerate(policy.agents)}
    cols = val["agent_name"].map(agent_pos).to_numpy()
    post_pred = early_policy.scores(val)[np.arange(len(val)), cols]
    model = fit_contextual_model(fit, config.context_keys, seed=config.seed)
    early_policy.model = model
    model_pred = early_policy.scores(val)[np.arange(len(val)), cols]
    y, n = val["reward_sum"].to_numpy(float), val["n"].to_numpy(float)
    ll_post, ll_model = weighted_log_loss(post_pred, y, n), weighted_log_loss(model_pred, y, n)
    policy.validation = {"log_loss_posteriors": ll_post, "log_loss_contextual": ll_model}
    if ll_model < ll_post - config.min_validation_gain:
        full = cells.groupby(key_cols, dropna=False, as_index=False)[["n", "reward_sum"]].sum()
        policy.model = fit_contextual_model(full, config.context_keys, seed=config.seed)
        policy.model_kind = "logistic_regression"
    return policy


def daily_success(daily: pd.DataFrame) -> pd.DataFrame:
    broad = daily[(daily["task_type"] == "*") & (daily["context_key"] == "*")]
    out = broad.groupby(["event_date", "agent_name"], as_index=False)[["successes", "n_events"]].sum()
    out["success_rate"] = out["successes"] / out["n_events"].clip(lower=1)
    return out.rename(columns={"event_date": "day", "n_events": "n"})[
        ["day", "agent_name", "success_rate", "n"]
    ]


@dataclass
class CycleResult:
    window: Window
    candidate: RoutingPolicy | None  # None when skipped
    evaluation: CycleEvaluation | None  # None when skipped
    registered: registry.RegisteredVersion | None
    timings_ms: dict[str, float]
    champion_version_before: int | None
    skipped: str | None = None  # the reason when the window had nothing to evaluate


def _online_evidence(con, window: Window, config: CycleConfig, champion: RoutingPolicy | None):
    """Outcomes since the champion's cut-off when it learns online and was trained before this window (it
    served with that evidence); None: the held-out events are all the evidence there is."""
    since = champion.params.get("cutoff") if champion is not None and champion.online_epoch_seconds else None
    if since is None or date.fromisoformat(since) >= window.cutoff:
        return None
    return outcome_stream(
        con,
        date.fromisoformat(since),
        window.eval_end,
        config.context_keys,
        config.reward_rule,
        config.reward_weights,
    )


def evaluate_window(
    con, window: Window, config: CycleConfig, candidate: RoutingPolicy, champion: RoutingPolicy | None
) -> tuple[CycleEvaluation, float, int]:
    t0 = time.perf_counter()
    events, candidates = held_out_events(
        con, window.cutoff, window.eval_end, config.context_keys, config.reward_rule, config.reward_weights
    )
    load_ms = (time.perf_counter() - t0) * 1000
    if events.empty:
        raise NoHeldOutEvents(f"no held-out events on {_days(window)}: nothing to evaluate")
    # every CycleConfig field evaluate_candidate takes (bootstrap, gate rules, weight clip), by its own name
    settings = {k: v for k, v in asdict(config).items() if k in _EVALUATE_PARAMETERS}
    result = evaluate_candidate(
        candidate,
        champion,
        events,
        candidate_agents=candidates,
        top_k=config.eval_top_k,
        evidence=_online_evidence(con, window, config, champion),
        **settings,
    )
    result.decision_join = decision_join_stats(con, window.cutoff, window.eval_end)
    return result, load_ms, len(events)


def run_cycle(
    paths: LakePaths,
    partition: str,
    config: CycleConfig,
    tracking_uri: str,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> CycleResult:
    """Train, evaluate against the current @champion (uniform random for the first version), log, register.
    A window without held-out events is skipped: `CycleResult.skipped` holds the reason, nothing registered."""
    from learning_pipeline.lib.storage.warehouse import lake_connection

    timings: dict[str, float] = {}
    start = time.perf_counter()
    con = con or lake_connection(paths)
    window = Window.for_partition(partition, config)
    reason = skip_reason(con, window)
    if reason is not None:
        record_skip(paths, partition, reason, (tags or {}).get("dagster_run_id"), start)
        timings["total"] = (time.perf_counter() - start) * 1000
        return CycleResult(window, None, None, None, timings, None, skipped=reason)
    trained = train_candidate(con, window, config)
    timings.update(trained.timings_ms)
    t = time.perf_counter()
    with registry.tracking(tracking_uri) as client:
        # creates the store on first use; artifacts beside a sqlite store, never ./mlruns
        registry.ensure_experiment(
            client, artifact_location=artifact_location or registry.artifact_location_for(tracking_uri)
        )
        timings["mlflow_setup"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        champion_version = registry.current_champion(client)
    champion = registry.load_policy(tracking_uri, champion_version) if champion_version is not None else None
    timings["load_champion"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    evaluation, load_ms, _ = evaluate_window(con, window, config, trained.policy, champion)
    timings["heldout_load"] = load_ms
    timings["evaluate"] = (time.perf_counter() - t) * 1000 - load_ms
    t = time.perf_counter()
    registered = register(
        paths,
        partition,
        trained.policy,
        evaluation,
        champion_version,
        tracking_uri,
        trained.success_by_day(),
        artifact_location,
        tags,
        started=start,
    )
    timings["register"] = (time.perf_counter() - t) * 1000
    timings.update({f"register.{k}": v for k, v in registered.timings_ms.items()})
    timings["total"] = (time.perf_counter() - start) * 1000
    return CycleResult(window, trained.policy, evaluation, registered, timings, champion_version)


def register(
    paths: LakePaths,
    partition: str,
    policy: RoutingPolicy,
    evaluation: CycleEvaluation,
    champion_version: int | None,
    tracking_uri: str,
    daily: pd.DataFrame | None = None,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
    started: float | None = None,
) -> registry.RegisteredVersion:
    """Log the run, register the version (aliases by the gate), record the learning event, refresh
    model_versions. Refuses when @champion moved since the evaluation (the comparison would be stale)."""
    t0 = time.perf_counter()
    with registry.tracking(tracking_uri) as client:
        now = registry.current_champion(client)
    if now != champion_version:
        raise ValueError(
            f"@champion moved from {champion_version} to {now} since the evaluation; evaluate again"
        )
    run_tags = {"partition": partition, **(tags or {})}
    params = {
        **policy.params,
        "partitions": f"{policy.params.get('train_start')}..{policy.params.get('eval_end', partition)}",
    }
    registered = registry.log_cycle(
        tracking_uri,
        policy,
        evaluation,
        params=params,
        tags=run_tags,
        daily_success=daily,
        parent_version=champion_version,
        artifact_location=artifact_location,
    )
    t1 = time.perf_counter()
    gate = evaluation.gate
    record_learning_event(
        paths,
        "evaluation_accepted" if registered.accepted else "evaluation_rejected",
        model_version_id=f"{registry.REGISTERED_MODEL}/{registered.version}",
        samples=evaluation.n_events,
        batch_size=int(policy.params.get("training_samples", 0)),
        metrics_before={"score": gate.baseline_score, "kind": gate.baseline_kind},
        metrics_after={"score": gate.candidate_score, "estimator": gate.estimator},
        improvement=gate.improvement,
        duration_ms=(time.perf_counter() - (started or t0)) * 1000,
        reason=gate.reason,
        partition_key=partition,
        dagster_run_id=run_tags.get("dagster_run_id"),
        mlflow_run_id=registered.run_id,
        parent_version=champion_version,
    )
    write_model_versions(paths, tracking_uri)
    registered.timings_ms["lake_tables"] = (time.perf_counter() - t1) * 1000
    return registered


# ---- step files (the Dagster assets hand these to each other) --------------------------------------


def candidate_dir(paths: LakePaths, partition: str) -> Path:
    return paths.root / "models" / "candidates" / partition


def save_candidate(paths: LakePaths, partition: str, trained: TrainedCandidate) -> Path:
    directory = trained.policy.save(candidate_dir(paths, partition))
    trained.success_by_day().to_parquet(directory / "daily_success.parquet", index=False)
    return directory


def load_candidate(paths: LakePaths, partition: str) -> tuple[RoutingPolicy, pd.DataFrame]:
    directory = candidate_dir(paths, partition)
    if not (directory / "policy.json").exists():
        raise ValueError(f"no candidate policy for partition {partition}; materialize candidate_policy first")
    return RoutingPolicy.load(directory), pd.read_parquet(directory / "daily_success.parquet")


def evaluation_path(paths: LakePaths, partition: str) -> Path:
    return paths.root / "models" / "evaluations" / partition / "evaluation.pkl"


def save_evaluation(
    paths: LakePaths, partition: str, evaluation: CycleEvaluation, champion_version: int | None
) -> Path:
    import pickle

    from learning_pipeline.lib.storage.lake import write_bytes_atomic

    payload = pickle.dumps({"evaluation": evaluation, "champion_version": champion_version})
    return write_bytes_atomic(evaluation_path(paths, partition), payload)


def load_evaluation(paths: LakePaths, partition: str) -> tuple[CycleEvaluation, int | None]:
    import pickle

    path = evaluation_path(paths, partition)
    if not path.exists():
        raise ValueError(f"no evaluation for partition {partition}; materialize policy_evaluation first")
    data = pickle.loads(path.read_bytes())
    return data["evaluation"], data["champion_version"]


# ---- lake tables -----------------------------------------------------------------------------------


def write_model_versions(paths: LakePaths, tracking_uri: str) -> pd.DataFrame:
    frame = registry.model_versions_frame(tracking_uri)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_parquet_atomic(paths.table("model_versions") / "data.parquet", table)
    return frame


def record_learning_event(
    paths: LakePaths, event_type: str, samples: int | None = None, **columns: Any
) -> Path:
    """Append one learning event. `columns`: any other LEARNING_EVENT_SCHEMA column (model_version_id,
    batch_size, metrics_before, metrics_after, improvement, duration_ms, reason, partition_key, dagster_run_id,
    mlflow_run_id, parent_version); the metrics are dicts (stored as JSON), a non-finite improvement is null."""
    unknown = set(columns) - set(LEARNING_EVENT_SCHEMA.names)
    if unknown:
        raise TypeError(f"not learning event columns: {sorted(unknown)}")
    row = dict.fromkeys(LEARNING_EVENT_SCHEMA.names) | columns
    improvement = row["improvement"]
    row.update(
        id=str(uuid.uuid4()),
        event_type=event_type,
        samples_processed=samples,
        metrics_before=json.dumps(row["metrics_before"] or {}, default=float),
        metrics_after=json.dumps(row["metrics_after"] or {}, default=float),
        improvement=None if improvement is None or not np.isfinite(improvement) else float(improvement),
        created_at=datetime.now(UTC),
    )
    table = pa.Table.from_pylist([row], schema=LEARNING_EVENT_SCHEMA)
    return write_parquet_atomic(
        paths.table("learning_events") / new_batch_name("learning-event", "parquet"), table
    )
