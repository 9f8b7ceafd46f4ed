"""MLflow side of a learning cycle: one run per evaluation, the `agent-router` pyfunc, aliases, lineage.

- Experiment `agent-learning-cycles`: a run per evaluation with params (priors, decay, data window,
  partitions), metrics (baseline/candidate score, improvement, samples, every estimator with its
  interval, calibration), artifacts (posterior table, plots) and tags (Dagster run id, partition,
  parent version).
- Registered model `agent-router`: an MLflow pyfunc wrapping the evaluated `RoutingPolicy` (its files
  are the model's artifact). Input rows: task_type + context fields (+ optional top_k); output per row:
  the top-k agents by selection probability with their propensities and scores. Every evaluated version
  gets `@challenger`; `@champion`, `@canary` and `@shadow` follow the version stages (lib/autonomy/graduation.py):
  acceptance alone never changes what serves. Version tags: parent_version (the champion it was compared
  with), gate (accepted/rejected), gate_reason, improvement, estimator.
- `model_versions_frame` derives the warehouse's `model_versions` table from the registry, so both
  always agree: @champion = active, accepted and later replaced = deprecated, rejected = archived,
  a version registered but not yet gated = training.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from learning_pipeline.lib.bandit.plots import plot_posteriors, plot_success_over_time
from learning_pipeline.lib.bandit.policy import CycleEvaluation, RoutingPolicy

EXPERIMENT_NAME = "agent-learning-cycles"
REGISTERED_MODEL = "agent-router"
CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_TYPE = "agent_router"
PACKAGE_DIR = Path(__file__).resolve().parents[2]  # learning_pipeline/, shipped with the model


def default_tracking_uri(data_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(data_dir).expanduser().resolve() / 'mlflow.db'}"


def default_artifact_location(data_dir: str | os.PathLike) -> str:
    return (Path(data_dir).expanduser().resolve() / "mlartifacts").as_uri()


def artifact_location_for(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts when the caller gives no location.

    sqlite:///<dir>/mlflow.db -> <dir>/mlartifacts (MLflow itself would use ./mlruns under the current
    directory); a tracking server decides its own (None)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])
        return (db.expanduser().resolve().parent / "mlartifacts").as_uri()
    return None


# The fluent MLflow API keeps one tracking URI per process; threads (e.g. sensors evaluated on threads by
# the daemon) take turns so no block ever logs to another block's URI or to the default ./mlflow.db.
_TRACKING_LOCK = threading.RLock()


@contextlib.contextmanager
def tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point the fluent MLflow API at `tracking_uri` for the duration of the block, then restore the
    previous setting (MLflow mirrors it into MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI for subprocesses,
    so those are restored too). Blocks in different threads of one process run one at a time."""
    with _TRACKING_LOCK:
        yield from _tracking(tracking_uri)


def _tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    previous_tracking = os.environ.get("MLFLOW_TRACKING_URI")
    previous_registry = os.environ.get("MLFLOW_REGISTRY_URI")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
        if previous_registry is None:
            os.environ.pop("MLFLOW_REGISTRY_URI", None)


# The MLflow UI opens an experiment of this kind on its runs (model training), not on GenAI traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DEFAULT_EXPERIMENT_ID = "0"


def ensure_experiment(
    client: MlflowClient, name: str = EXPERIMENT_NAME, artifact_location: str | None = None
) -> str:
    """The experiment's id, created on first use; a new store's empty "Default" experiment is removed then,
    so the UI lists only the project's experiments (never one holding runs)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    experiment_id = client.create_experiment(
        name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    )
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # a tracking server may refuse
        default = client.get_experiment(DEFAULT_EXPERIMENT_ID)
        if default.lifecycle_stage == "active" and not client.search_runs(
            [DEFAULT_EXPERIMENT_ID], max_results=1
        ):
            client.delete_experiment(DEFAULT_EXPERIMENT_ID)
    return experiment_id


def stable_metric_names(metrics: dict[str, float], baseline: str) -> dict[str, float]:
    """The baseline's metrics under one name whichever baseline it is (uniform random for the first version,
    then the champion): `<baseline>.x` -> `baseline.x`, `candidate_minus_<baseline>.x` ->
    `candidate_minus_baseline.x`, so every run has the same metric names and the UI one chart per metric."""
    renames = {f"{baseline}.": "baseline.", f"candidate_minus_{baseline}.": "candidate_minus_baseline."}
    out = {}
    for key, value in metrics.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


# ---- the pyfunc ------------------------------------------------------------------------------------


class RouterModel(mlflow.pyfunc.PythonModel):
    """The evaluated routing policy: per request row the top-k agents by selection probability, with each
    agent's probability of being selected (`propensities`) and predicted success (`scores`)."""

    def load_context(self, context):
        self.policy = RoutingPolicy.load(context.artifacts["policy"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        top_k = int((params or {}).get("top_k", 3))
        return self.policy.recommend(frame, top_k=top_k)


def router_signature(context_keys: tuple[str, ...]) -> ModelSignature:
    inputs = Schema(
        [ColSpec("string", "task_type")]
        + [ColSpec("string", key, required=False) for key in context_keys]
        + [
            ColSpec("long", "top_k", required=False),
            ColSpec(Array("string"), "candidate_agents", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "task_type"),
            ColSpec("string", "agent_name"),
            ColSpec("double", "score"),
            ColSpec(Array("string"), "agents"),
            ColSpec(Array("double"), "scores"),
            ColSpec(Array("double"), "propensities"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec("top_k", "long", 3)]))


# ---- one evaluated version -------------------------------------------------------------------------


@dataclass
class RegisteredVersion:
    version: int
    run_id: str
    accepted: bool
    reason: str
    parent_version: int | None
    champion_version: int | None
    model_uri: str
    timings_ms: dict[str, float] = field(default_factory=dict)


def current_champion(client: MlflowClient, name: str = REGISTERED_MODEL) -> int | None:
    try:
        return int(client.get_model_version_by_alias(name, CHAMPION).version)
    except mlflow.exceptions.MlflowException:
        return None


def load_policy(tracking_uri: str, version: int | str, name: str = REGISTERED_MODEL) -> RoutingPolicy:
    """The RoutingPolicy of a registered version (a number or an alias such as 'champion').

    The policy's files are downloaded from the version's artifacts; a pickled model is loaded only if its
    SHA-256 equals the `model_sha256` tag recorded on the version at registration (the registry database is
    trusted, the artifact store need not be)."""
    import tempfile

    with tracking(tracking_uri) as client:
        mv = (
            client.get_model_version_by_alias(name, version)
            if isinstance(version, str) and not version.isdigit()
            else client.get_model_version(name, str(version))
        )
        base = client.get_model_version_download_uri(name, mv.version)
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/artifacts/policy", dst_path=tmp, tracking_uri=tracking_uri
            )
            return RoutingPolicy.load(local, expected_model_sha256=mv.tags.get("model_sha256") or None)


def log_cycle(
    tracking_uri: str,
    policy: RoutingPolicy,
    result: CycleEvaluation,
    params: dict[str, Any],
    tags: dict[str, str],
    daily_success: pd.DataFrame | None = None,
    parent_version: int | None = None,
    experiment: str = EXPERIMENT_NAME,
    artifact_location: str | None = None,
    name: str = REGISTERED_MODEL,
) -> RegisteredVersion:
    """Log the evaluation run, register the policy as a new version, set aliases by the gate decision."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with tracking(tracking_uri) as client, tempfile.TemporaryDirectory() as tmp:
        exp_id = ensure_experiment(
            client, experiment, artifact_location or artifact_location_for(tracking_uri)
        )
        tmp_path = Path(tmp)
        policy_dir = policy.save(tmp_path / "policy")
        model_sha256 = json.loads((policy_dir / "policy.json").read_text()).get("model_sha256", "")
        plots = [plot_posteriors(policy.posteriors, tmp_path / "posterior_densities.png")]
        if daily_success is not None:
            held_out = (str(params["cutoff"]), str(params["eval_end"])) if "cutoff" in params else None
            plots.append(plot_success_over_time(daily_success, tmp_path / "success_over_time.png", held_out))
        (tmp_path / "gate.json").write_text(json.dumps(result.gate.as_dict(), indent=2))
        estimates = pd.DataFrame(
            [
                dict(policy=p, **e.as_dict())
                for p, by in result.evaluation.estimates.items()
                for e in by.values()
            ]
            + [
                dict(policy=f"{p}-{result.evaluation.reference}", **e.as_dict())
                for p, by in result.evaluation.differences.items()
                for e in by.values()
            ]
        )
        estimates.to_csv(tmp_path / "estimates.csv", index=False)
        timings["artifacts_prepare"] = (time.perf_counter() - t0) * 1000

        t1 = time.perf_counter()
        run_tags = {k: str(v) for k, v in tags.items()}
        run_tags["parent_version"] = "" if parent_version is None else str(parent_version)
        run_tags["gate"] = "accepted" if result.gate.accepted else "rejected"
        run_tags["mlflow.note.content"] = run_description(result, tags.get("partition"), params)
        with mlflow.start_run(experiment_id=exp_id, tags=run_tags, run_name=run_name(result, tags)) as run:
            mlflow.log_params(
                {k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in params.items()}
                | {"baseline_kind": result.gate.baseline_kind}
            )
            metrics = {k: float(v) for k, v in result.metrics().items() if v is not None and np.isfinite(v)}
            mlflow.log_metrics(stable_metric_names(metrics, result.evaluation.reference))
            # the training window's mean reward and its components (base, cost and latency penalties)
            mlflow.log_metrics(
                {f"reward.{k}": float(v) for k, v in (params.get("reward_components") or {}).items()}
            )
            mlflow.log_artifact(str(policy_dir / "posteriors.parquet"), artifact_path="posteriors")
            for path in plots:
                mlflow.log_artifact(str(path), artifact_path="plots")
            mlflow.log_artifact(str(tmp_path / "gate.json"))
            mlflow.log_artifact(str(tmp_path / "estimates.csv"))
            timings["run_log"] = (time.perf_counter() - t1) * 1000

            t2 = time.perf_counter()
            info = mlflow.pyfunc.log_model(
                name="router",
                python_model=RouterModel(),
                artifacts={"policy": str(policy_dir)},
                signature=router_signature(policy.context_keys),
                code_paths=[str(PACKAGE_DIR)],
                registered_model_name=name,
                pip_requirements=_pip_requirements(),
                tags={"gate": run_tags["gate"]},
            )
            timings["log_model"] = (time.perf_counter() - t2) * 1000
        t3 = time.perf_counter()
        version = int(info.registered_model_version)
        if client.get_registered_model(name).description != REGISTERED_MODEL_DESCRIPTION:
            client.update_registered_model(name, description=REGISTERED_MODEL_DESCRIPTION)
        gate = result.gate
        version_tags = {
            "parent_version": "" if parent_version is None else str(parent_version),
            "gate": "accepted" if gate.accepted else "rejected",
            "gate_reason": gate.reason,
            "baseline_kind": gate.baseline_kind,
            "estimator": gate.estimator,
            "improvement": f"{gate.improvement:.6f}",
            "candidate_score": f"{gate.candidate_score:.6f}",
            "baseline_score": f"{gate.baseline_score:.6f}",
            "samples": str(result.n_events),
            "training_samples": str(int(policy.params.get("training_samples", 0))),
            "model_kind": policy.model_kind,
            "model_sha256": model_sha256,  # load_policy refuses a model file with another digest
            "parameters": json.dumps(params, default=str)[:4900],
            "created_at_ms": str(int(time.time() * 1000)),
        }
        version_tags.update({f"tag.{k}": str(v) for k, v in tags.items()})
        for key, value in version_tags.items():
            client.set_model_version_tag(name, str(version), key, value)
        # every evaluated version is the challenger; what serves (@champion = live) moves only through the
        # stages of lib/autonomy/graduation.py, never on acceptance alone
        client.set_registered_model_alias(name, CHALLENGER, str(version))
        timings["registry"] = (time.perf_counter() - t3) * 1000
        champion = current_champion(client, name)
    return RegisteredVersion(
        version=version,
        run_id=run.info.run_id,
        accepted=gate.accepted,
        reason=gate.reason,
        parent_version=parent_version,
        champion_version=champion,
        model_uri=f"models:/{name}/{version}",
        timings_ms=timings,
    )


# The registered model's description in the MLflow UI: what a version is and how it moves through the stages
# of lib/autonomy/graduation.py.
REGISTERED_MODEL_DESCRIPTION = """\
Routes a task to an agent: an MLflow pyfunc wrapping a `RoutingPolicy` trained by a learning cycle on the
outcome events before its held-out day. Input rows: `task_type` and context fields (optional `top_k`);
output per row: the top agents with their selection probabilities (propensities) and scores.

**How versions move.** Every learning cycle registers a version (alias `@challenger`) with its gate verdict in
the version tags (`gate`, `gate_reason`, `improvement`, `estimator`, `parent_version`). Stages:

- `candidate` -> `rejected`: the off-policy gate rejected it;
- `candidate` -> `approved`: auto-approval thresholds met, or a person approved it
  (`learning-pipeline graduation approve-candidate`);
- `approved` -> `shadow` (`@shadow`): automatic, once the graduation criteria hold on live traffic;
- `shadow` -> `canary` (`@canary`): a person, for a share of the requests;
- `shadow` or `canary` -> `live` (`@champion`): a person only (`learning-pipeline graduation approve`);
  the previous live version is retired.

Demotion on degradation (or by a person): live -> retired (the previous live version returns), canary ->
shadow, shadow -> approved. Only `@champion` and `@canary` serve; acceptance alone never changes what serves.
"""


def run_name(result: CycleEvaluation, tags: dict[str, str]) -> str:
    """What the run list shows: the held-out day and the gate's verdict, e.g. `2026-12-01 accepted +0.2216`."""
    gate = result.gate
    verdict = "accepted" if gate.accepted else "rejected"
    return f"{tags.get('partition', 'cycle')} {verdict} {gate.improvement:+.4f} vs {gate.baseline_kind}"


def run_description(result: CycleEvaluation, partition: str | None, params: dict[str, Any]) -> str:
    """The run's description (markdown) in the MLflow UI."""
    gate = result.gate
    return (
        f"Learning cycle for the held-out day {partition}: a candidate routing policy trained on "
        f"{params.get('train_start')} .. {params.get('cutoff')} (before the cut-off), evaluated off-policy on "
        f"{result.n_events} held-out events against the {gate.baseline_kind} baseline with the `{gate.estimator}` "
        f"estimator.\n\n**{'Accepted' if gate.accepted else 'Rejected'}**: {gate.reason}.\n\n"
        "Metrics `candidate.*` and `baseline.*` hold each policy's estimates (`baseline_kind` says which baseline); "
        "`candidate_minus_baseline.*` the paired differences. Plots: `plots/`."
    )


def _pip_requirements() -> list[str]:
    from importlib.metadata import version as v

    reqs = []
    for pkg in ("mlflow", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy"):
        try:
            reqs.append(f"{pkg}=={v(pkg)}")
        except Exception:  # pragma: no cover - optional package missing
            pass
    return reqs


def model_versions_frame(tracking_uri: str, name: str = REGISTERED_MODEL) -> pd.DataFrame:
    """The `model_versions` table (seed columns + lineage) derived from the registry."""
    columns = [
        "id",
        "model_type",
        "version_number",
        "status",
        "parameters",
        "metrics",
        "model_file_path",
        "created_at",
        "parent_version",
        "gate",
        "gate_reason",
        "improvement",
        "training_samples",
        "aliases",
        "mlflow_run_id",
        "rollback_reason",
    ]
    with tracking(tracking_uri) as client:
        try:
            versions = client.search_model_versions(f"name = '{name}'")
            aliases = client.get_registered_model(name).aliases
        except mlflow.exceptions.MlflowException:
            return pd.DataFrame(columns=columns)
        champion = int(aliases[CHAMPION]) if CHAMPION in aliases else None
        by_version: dict[int, list[str]] = {}
        for alias, v in aliases.items():
            by_version.setdefault(int(v), []).append(alias)
        rows = []
        for mv in versions:
            number = int(mv.version)
            t = mv.tags or {}
            if number == champion:
                status = "active"
            elif t.get("gate") == "accepted":
                status = "deprecated"
            elif t.get("gate") == "rejected":
                status = "archived"
            else:
                status = "training"
            metrics = {
                k: t[k] for k in ("candidate_score", "baseline_score", "improvement", "samples") if k in t
            }
            rows.append(
                {
                    "id": f"{name}/{number}",
                    "model_type": MODEL_TYPE,
                    "version_number": number,
                    "status": status,
                    "parameters": t.get("parameters", "{}"),
                    "metrics": json.dumps({k: float(v) for k, v in metrics.items()}),
                    "model_file_path": f"models:/{name}/{number}",
                    "created_at": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
                    "parent_version": int(t["parent_version"]) if t.get("parent_version") else None,
                    "gate": t.get("gate"),
                    "gate_reason": t.get("gate_reason"),
                    "improvement": float(t["improvement"]) if "improvement" in t else None,
                    "training_samples": int(t["training_samples"]) if "training_samples" in t else None,
                    "aliases": ",".join(sorted(by_version.get(number, []))),
                    "mlflow_run_id": mv.run_id,
                    "rollback_reason": t.get("rollback_reason"),
                }
            )
    frame = pd.DataFrame(rows, columns=columns).sort_values("version_number").reset_index(drop=True)
    frame["parent_version"] = frame["parent_version"].astype("Int64")
    frame["training_samples"] = frame["training_samples"].astype("Int64")
    return frame
