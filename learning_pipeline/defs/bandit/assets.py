"""agent_posteriors (Thompson-sampling beliefs) and agent_recommendations (top-k per task type / context)."""

import base64
import json
from datetime import UTC, date, datetime

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from learning_pipeline.defs.metadata import markdown_table
from learning_pipeline.defs.partitions import ALL_DAYS
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.defs.stats.assets import stats_connection
from learning_pipeline.lib.bandit.plots import plot_posteriors
from learning_pipeline.lib.bandit.policy import DEFAULT_CONTEXT_KEYS
from learning_pipeline.lib.bandit.thompson import ALL, Recommender, compute_posteriors, decay_factor
from learning_pipeline.lib.learning.data import daily_from_cells, joint_cells, reward_evidence, reward_vars
from learning_pipeline.lib.storage.lake import LakePaths, write_bytes_atomic, write_parquet_atomic
from learning_pipeline.lib.storage.warehouse import lake_connection, table_names

PARAMS_FILE = "_params.json"  # priors and decay of the current posteriors, beside the Parquet file


class PosteriorConfig(dg.Config):
    """Keyword arguments of compute_posteriors, and the reward the posteriors learn."""

    alpha0: float = 1.0
    beta0: float = 1.0
    half_life_days: float | None = None  # None: no decay
    as_of: str | None = None  # reference day for decay; default: the latest event day
    n_samples: int = 1000
    seed: int = 0
    # the reward (dbt_like_sql/macros/reward.sql): base rule and penalty weights per task type, {"*": {"cost":
    # per USD, "latency": per second}, "<task type>": {...}}. The daily aggregates hold the graded rule
    # without penalties; another reward is computed from the events (clipping makes it non-additive).
    reward_rule: str = "graded"
    reward_weights: dict[str, dict[str, float]] = {}


def reward_daily(paths: LakePaths, config: PosteriorConfig) -> pd.DataFrame:
    """Daily aggregates of every day as Beta evidence of the configured reward."""
    with lake_connection(paths) as con:
        if "outcome_events" not in table_names(con):
            raise dg.Failure("no outcome events in the lake yet: materialize outcome_events first")
        cells = joint_cells(
            con, date.min, date.max, DEFAULT_CONTEXT_KEYS, config.reward_rule, config.reward_weights
        )
    return reward_evidence(daily_from_cells(cells, DEFAULT_CONTEXT_KEYS))


class RecommendationConfig(dg.Config):
    top_k: int = 3
    mode: str = "mean"  # "mean" (deterministic) or "thompson" (one posterior sample per agent)
    seed: int = 0


def read_params(paths: LakePaths) -> dict:
    path = paths.table("agent_posteriors") / PARAMS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


@dg.asset(
    deps=[dg.AssetDep("agent_daily_stats")],
    kinds={"duckdb", "numpy", "parquet"},
    group_name="bandit",
    tags=ALL_DAYS,
    description="Beta(alpha, beta) per (task_type, context bucket, agent) with mean, 95% credible interval "
    "and P(best) within each group; task_type '*' pools all task types.",
)
def agent_posteriors(config: PosteriorConfig, lake: LakeResource) -> dg.MaterializeResult:
    paths = lake.paths
    reward = reward_vars(config.reward_rule, config.reward_weights)  # raises on a bad rule or weight
    if reward != reward_vars():
        daily = reward_daily(paths, config)
    else:
        with stats_connection(paths) as con:
            names = table_names(con)
            if "agent_daily_stats" not in names:
                raise dg.Failure("no daily aggregates in the lake yet: materialize agent_daily_stats first")
            daily = con.execute("SELECT * FROM agent_daily_stats").df()
    post = compute_posteriors(daily, **config.model_dump(exclude={"reward_rule", "reward_weights"}))
    write_parquet_atomic(
        paths.table("agent_posteriors") / "data.parquet", pa.Table.from_pandas(post, preserve_index=False)
    )
    params = {
        "alpha0": config.alpha0,
        "beta0": config.beta0,
        "half_life_days": config.half_life_days,
        "decay_factor": decay_factor(config.half_life_days),
        "as_of": config.as_of,
        "reward_rule": config.reward_rule,
        "reward_weights": config.reward_weights,
    }
    write_bytes_atomic(paths.table("agent_posteriors") / PARAMS_FILE, json.dumps(params).encode())
    plot = plot_posteriors(post, paths.root / "plots" / "agent_posteriors.png")
    broad = post[(post["context_key"] == ALL) & (post["task_type"] != ALL)]
    best = broad.sort_values("p_best", ascending=False).groupby("task_type").head(1).sort_values("task_type")
    summary = best[["task_type", "agent_name", "mean", "ci_low", "ci_high", "p_best", "n_events"]].head(30)
    image = base64.b64encode(plot.read_bytes()).decode()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(post),
            "task_types": dg.MetadataValue.int(int(broad["task_type"].nunique())),
            "agents": dg.MetadataValue.int(int(post["agent_name"].nunique())),
            # numbers Dagster charts over time: how sure the bandit is of its best agents
            "mean_best_posterior_mean": dg.MetadataValue.float(
                float(best["mean"].mean()) if len(best) else 0.0
            ),
            "min_best_p_best": dg.MetadataValue.float(float(best["p_best"].min()) if len(best) else 0.0),
            "priors": dg.MetadataValue.json(params),
            "best_agent_per_task": markdown_table(summary, floatfmt=".3f", empty="(empty)"),
            "plot": dg.MetadataValue.md(f"![agent posteriors](data:image/png;base64,{image})"),
            "plot_path": dg.MetadataValue.path(str(plot)),
        }
    )


def recommendations_table(post: pd.DataFrame, top_k: int, mode: str, seed: int) -> pd.DataFrame:
    rec = Recommender(post)
    groups = post[["task_type", "context_key", "context_value"]].drop_duplicates().reset_index(drop=True)
    rows = np.array([rec.group_row(*g) for g in groups.itertuples(index=False)], dtype=np.int64)
    batch = rec.recommend_rows(rows, top_k=top_k, mode=mode, rng=np.random.default_rng(seed))
    frame = batch.to_frame()
    keys = groups.iloc[frame["request_index"].to_numpy()].reset_index(drop=True)
    out = pd.concat([keys, frame.drop(columns="request_index")], axis=1)
    out["mode"] = mode
    out["generated_at"] = datetime.now(UTC)
    return out


@dg.asset(
    deps=[dg.AssetDep("agent_posteriors")],
    kinds={"numpy", "parquet"},
    group_name="bandit",
    tags=ALL_DAYS,
    description="Top-k agents per (task_type, context bucket), from agent_posteriors.",
)
def agent_recommendations(config: RecommendationConfig, lake: LakeResource) -> dg.MaterializeResult:
    paths = lake.paths
    source = paths.table("agent_posteriors") / "data.parquet"
    if not source.exists():
        raise dg.Failure("agent_posteriors has not been materialized yet")
    post = pd.read_parquet(source)
    params = read_params(paths)
    if config.mode not in ("mean", "thompson"):
        raise dg.Failure(f"mode must be 'mean' or 'thompson', not {config.mode!r}")
    table = recommendations_table(post, config.top_k, config.mode, config.seed)
    write_parquet_atomic(
        paths.table("agent_recommendations") / "data.parquet",
        pa.Table.from_pandas(table, preserve_index=False),
    )
    top1 = table[(table["rank"] == 1) & (table["context_key"] == ALL)].head(30)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "mean_top1_score": dg.MetadataValue.float(float(top1["score"].mean()) if len(top1) else 0.0),
            "priors": dg.MetadataValue.json(params),
            "top1_per_task": markdown_table(
                top1[["task_type", "agent_name", "score", "model_score"]], floatfmt=".3f", empty="(empty)"
            ),
        }
    )
