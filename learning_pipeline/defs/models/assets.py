"""candidate_policy -> policy_evaluation -> model_versions + learning_events (daily partitions).

For partition D: the candidate is trained on the `window_days` before the cut-off D - eval_days + 1 and
evaluated on [cut-off, D]; the MLflow run, the registered version and its aliases follow the eval gate.
A day without held-out events is a quiet day, not a failure: every asset ends with `skipped` metadata and the
reason ("no held-out events on D: nothing to evaluate"), nothing is trained or registered, and
learning_events records a `cycle_skipped` event.
"""

import dagster as dg
import pandas as pd

from learning_pipeline.defs.lazy import lazy_module
from learning_pipeline.defs.metadata import markdown_table
from learning_pipeline.defs.models.resources import MlflowResource
from learning_pipeline.defs.partitions import daily_partitions
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.summary import links
from learning_pipeline.lib.bandit.contexts import DEFAULT_MIN_EVIDENCE
from learning_pipeline.lib.storage.warehouse import lake_connection

cycle = lazy_module("learning_pipeline.lib.learning.cycle")
registry = lazy_module("learning_pipeline.lib.learning.registry")

# Registering versions and moving aliases run one at a time (dagster.yaml: limit 1): the gate compares with
# the champion of its evaluation and refuses if @champion moved meanwhile.
REGISTRY_POOL = "mlflow_registry"


class CandidateConfig(dg.Config):
    alpha0: float = 1.0
    beta0: float = 1.0
    half_life_days: float | None = None  # None: no decay
    window_days: int = 28
    eval_days: int = 1
    context_keys: list[str] = ["complexity", "domain"]
    # events a context bucket (joint, then single key) needs before it answers; fewer: the broader level
    min_context_evidence: float = DEFAULT_MIN_EVIDENCE
    contextual_model: bool = True  # fit a scikit-learn success model; kept only if it wins on validation
    validation_days: int = 2
    reward_rule: str = "graded"  # "graded" (partial = quality) or "success"
    # penalty weights per task type, "*" the default row: {"*": {"cost": per USD, "latency": per second}}
    reward_weights: dict[str, dict[str, float]] = {}
    # > 0: the version keeps learning while it serves, from the outcomes posted to the decision service, in
    # epochs of this many seconds; the gate replays exactly that (lib/bandit/online.py). 0: frozen.
    online_epoch_seconds: float = 0.0


class EvaluationConfig(dg.Config):
    n_bootstrap: int = 500
    seed: int = 0
    # the eval gate (lib/bandit/gate.py): accept only if the lower bound of the paired interval of the
    # improvement exceeds max(0, min_relative_improvement x the baseline's value)
    min_relative_improvement: float = 0.01
    max_regression: float = 0.01  # absolute: the interval may not reach a larger regression
    min_improvement: float = 0.0  # optional absolute floor on the point estimate (0: off)
    min_events: int = 50
    min_effective_sample_size: float = 30.0
    max_weight: float | None = 100.0  # importance-weight clipping for IPS/SNIPS/DR (None: off)
    min_propensity_coverage: float = 0.95
    eval_top_k: int = 3  # the served top-k list replayed per policy: top3_hit_rate, top3_replay, ...


def _skipped(reason: str) -> dict:
    return {"skipped": True, "reason": reason, "registered": False}


def _quiet_day(paths, partition: str) -> str | None:
    """The skip reason of a partition whose held-out day has no events (default window), else None."""
    with lake_connection(paths) as con:
        return cycle.skip_reason(con, cycle.Window.for_partition(partition, _cycle_config(CandidateConfig())))


def _cycle_config(
    candidate: CandidateConfig, evaluation: EvaluationConfig | None = None
) -> "cycle.CycleConfig":
    values = dict(candidate.model_dump())
    if evaluation is not None:
        values.update(evaluation.model_dump())
    values["context_keys"] = tuple(values["context_keys"])
    return cycle.CycleConfig(**values)


@dg.asset(
    partitions_def=daily_partitions,
    deps=[dg.AssetDep("outcome_events")],
    kinds={"duckdb", "numpy", "scikit-learn"},
    group_name="models",
    description="Routing policy trained on the window before the partition's cut-off: Beta posteriors plus an "
    "optional scikit-learn contextual success model (kept only if it beats the posteriors by log loss).",
)
def candidate_policy(
    context: dg.AssetExecutionContext, config: CandidateConfig, lake: LakeResource
) -> dg.MaterializeResult:
    paths = lake.paths
    cfg = _cycle_config(config)
    window = cycle.Window.for_partition(context.partition_key, cfg)
    with lake_connection(paths) as con:
        reason = cycle.skip_reason(con, window)
        if reason is not None:
            context.log.info(f"learning cycle {context.partition_key} skipped: {reason}")
            return dg.MaterializeResult(metadata=_skipped(reason))
        trained = cycle.train_candidate(con, window, cfg)
    directory = cycle.save_candidate(paths, context.partition_key, trained)
    policy = trained.policy
    broad = policy.posteriors[
        (policy.posteriors["context_key"] == "*") & (policy.posteriors["task_type"] != "*")
    ]
    top = broad.sort_values("mean", ascending=False).groupby("task_type").head(1)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(directory)),
            "model_kind": policy.model_kind,
            "training_samples": int(policy.params.get("training_samples", 0)),
            "agents": len(policy.agents),
            "posterior_rows": len(policy.posteriors),
            "window": f"{window.train_start} .. {window.cutoff} (exclusive)",
            "validation": dg.MetadataValue.json(policy.validation),
            "best_per_task": markdown_table(top[["task_type", "agent_name", "mean", "n_events"]].round(4)),
            "timings_ms": dg.MetadataValue.json({k: round(v, 1) for k, v in trained.timings_ms.items()}),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    deps=[candidate_policy, dg.AssetDep("outcome_events")],
    kinds={"numpy", "mlflow"},
    group_name="models",
    description="Off-policy evaluation of the candidate and the current @champion (uniform random for the "
    "first version) on the held-out days: IPS, SNIPS, DR (with propensities) or replay and direct method "
    "(without), bootstrap intervals, calibration, and the eval gate's decision.",
)
def policy_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, lake: LakeResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    paths = lake.paths
    partition = context.partition_key
    cycle.evaluation_path(paths, partition).unlink(missing_ok=True)  # never register a stale evaluation
    if not cycle.candidate_dir(paths, partition).joinpath("policy.json").exists():
        reason = _quiet_day(paths, partition)
        if reason is not None:  # candidate_policy skipped the day
            return dg.MaterializeResult(metadata=_skipped(reason))
    candidate, _ = cycle.load_candidate(paths, partition)
    cfg = cycle.CycleConfig(
        **{k: v for k, v in candidate.params.items() if k in cycle.CycleConfig.__dataclass_fields__},
    )
    for key, value in config.model_dump().items():
        setattr(cfg, key, value)
    window = cycle.Window.for_partition(partition, cfg)
    with registry.tracking(mlflow.uri) as client:
        champion_version = registry.current_champion(client)
    champion = registry.load_policy(mlflow.uri, champion_version) if champion_version is not None else None
    try:
        with lake_connection(paths) as con:
            result, _, n = cycle.evaluate_window(con, window, cfg, candidate, champion)
    except cycle.NoHeldOutEvents as exc:
        return dg.MaterializeResult(metadata=_skipped(str(exc)))
    cycle.save_evaluation(paths, partition, result, champion_version)
    gate = result.gate
    rows = [
        {
            "policy": p,
            "estimator": e.estimator,
            "value": e.value,
            "ci_low": e.ci_low,
            "ci_high": e.ci_high,
            "n": e.n,
        }
        for p, by in result.evaluation.estimates.items()
        for e in by.values()
    ]
    return dg.MaterializeResult(
        metadata={
            "accepted": gate.accepted,
            "reason": gate.reason,
            "estimator": gate.estimator,
            "baseline": gate.baseline_kind if champion_version is None else f"champion v{champion_version}",
            "candidate_score": gate.candidate_score,
            "baseline_score": gate.baseline_score,
            "improvement": gate.improvement,
            "improvement_interval": f"[{gate.improvement_ci_low:+.4f}, {gate.improvement_ci_high:+.4f}]",
            "improvement_ci_low": dg.MetadataValue.float(float(gate.improvement_ci_low)),
            **(
                {"champion_score": dg.MetadataValue.float(float(gate.baseline_score))}
                if champion_version is not None
                else {}
            ),
            # the @champion version this candidate was compared with (none: the uniform-random baseline)
            **links.mlflow_link_metadata(
                mlflow.uri, model_name=registry.REGISTERED_MODEL, version=champion_version, prefix="champion"
            ),
            "held_out_events": n,
            "propensity_coverage": result.evaluation.propensity_coverage,
            "calibration": dg.MetadataValue.json(result.calibration),
            "gate_rule": gate.rule or "accepted",
            # per policy: ESS / max weight / clipped share of the importance weights, served top-k replay
            "diagnostics": dg.MetadataValue.json(
                {p: {k: round(v, 6) for k, v in d.items()} for p, d in result.evaluation.diagnostics.items()}
            ),
            "estimates": markdown_table(pd.DataFrame(rows).round(4)),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "model_versions",
            deps=[policy_evaluation],
            kinds={"mlflow", "parquet"},
            group_name="models",
            description="Every registered version of agent-router (status training/active/deprecated/archived, "
            "parameters, metrics, parent version, aliases), derived from the MLflow registry.",
        ),
        dg.AssetSpec(
            "learning_events",
            deps=[policy_evaluation],
            kinds={"parquet"},
            group_name="models",
            description="One row per learning event: evaluations (accepted/rejected, with reason) and rollbacks.",
        ),
    ],
    partitions_def=daily_partitions,
    pool=REGISTRY_POOL,
)
def model_versions(context: dg.AssetExecutionContext, lake: LakeResource, mlflow: MlflowResource):
    """Log the evaluation run to MLflow, register the candidate, move @challenger / @champion by the gate."""
    paths = lake.paths
    partition = context.partition_key
    if not cycle.evaluation_path(paths, partition).exists():
        reason = _quiet_day(paths, partition)
        if reason is not None:  # a quiet day: record why, register nothing
            cycle.record_skip(paths, partition, reason, context.run.run_id)
            versions = cycle.write_model_versions(paths, mlflow.uri)
            yield dg.MaterializeResult(
                asset_key="model_versions", metadata={**_skipped(reason), "dagster/row_count": len(versions)}
            )
            yield dg.MaterializeResult(
                asset_key="learning_events", metadata={**_skipped(reason), "event_type": "cycle_skipped"}
            )
            return
    candidate, daily = cycle.load_candidate(paths, partition)
    result, champion_version = cycle.load_evaluation(paths, partition)
    registered = cycle.register(
        paths,
        partition,
        candidate,
        result,
        champion_version,
        mlflow.uri,
        daily,
        artifact_location=mlflow.artifact_location,
        tags={"dagster_run_id": context.run.run_id},
    )
    versions = registry.model_versions_frame(mlflow.uri)
    yield dg.MaterializeResult(
        asset_key="model_versions",
        metadata={
            "version": registered.version,
            "accepted": registered.accepted,
            "reason": registered.reason,
            "parent_version": registered.parent_version if registered.parent_version is not None else -1,
            "champion_version": registered.champion_version
            if registered.champion_version is not None
            else -1,
            "mlflow_run_id": registered.run_id,
            "model_uri": registered.model_uri,
            **links.mlflow_link_metadata(
                mlflow.uri,
                run_id=registered.run_id,
                experiment_id=links.experiment_of_run(mlflow.uri, registered.run_id),
                model_name=registry.REGISTERED_MODEL,
                version=registered.version,
            ),
            "dagster/row_count": len(versions),
            "versions": markdown_table(
                versions[["version_number", "status", "parent_version", "gate", "improvement", "aliases"]]
            ),
            "timings_ms": dg.MetadataValue.json({k: round(v, 1) for k, v in registered.timings_ms.items()}),
        },
    )
    yield dg.MaterializeResult(
        asset_key="learning_events",
        metadata={"event_type": "evaluation_accepted" if registered.accepted else "evaluation_rejected"},
    )


@dg.asset_check(
    asset="model_versions",
    blocking=True,
    description="the lake table agrees with the registry: "
    "exactly one active version, and it carries @champion",
)
def model_versions_match_registry(lake: LakeResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
    with lake_connection(lake.paths) as con:
        table = con.execute("SELECT version_number, status, aliases FROM model_versions ORDER BY 1").df()
    registry_frame = registry.model_versions_frame(mlflow.uri)
    same = (
        table[["version_number", "status"]]
        .reset_index(drop=True)
        .equals(registry_frame[["version_number", "status"]].reset_index(drop=True))
    )
    active = table[table["status"] == "active"]
    one_champion = len(active) <= 1 and (active.empty or "champion" in str(active["aliases"].iloc[0]))
    return dg.AssetCheckResult(
        passed=bool(same and one_champion),
        metadata={"versions": len(table), "active": len(active), "matches_registry": bool(same)},
    )


# ---- rollback ------------------------------------------------------------------------------------


class RollbackConfig(dg.Config):
    version: int
    reason: str
    by: str
    force: bool = False  # needed for a version the gate rejected or nobody approved


@dg.op(
    description="Make an earlier agent-router version live again (@champion) and record who and why.",
    pool=REGISTRY_POOL,
)
def rollback_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, lake: LakeResource, mlflow: MlflowResource
) -> dict:
    from learning_pipeline.lib.autonomy import operations

    info = operations.rollback(
        lake.paths, mlflow.uri, config.version, config.by, config.reason, config.force, context.run_id
    )
    context.log.info(f"@champion -> v{config.version} (was v{info['previous_champion']}): {config.reason}")
    return info


@dg.job(
    description="Roll @champion back to an earlier agent-router version (config: version, reason, by, force)."
)
def rollback_job():
    rollback_champion()
