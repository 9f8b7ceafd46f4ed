"""Posteriors from counts (with the partial rule and decay), P(best), recommendations and cold start."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from learning_pipeline.lib.bandit.thompson import (
    POSTERIOR_COLUMNS,
    Recommender,
    compute_posteriors,
    decay_factor,
    recommend,
    recommend_batch,
)
from learning_pipeline.lib.simulation import SimulationConfig, SimulationTruth, generate_table
from learning_pipeline_tests._learning_fixtures import daily_stats

END = date(2025, 2, 28)  # the last simulated day


def simulated(task_types: int, agents: int, days: int, events_per_day: int, seed: int, **truth):
    """Events from numbered task types and agents, with a few missing task types and quality scores."""
    size = dict(days=days, events_per_day=events_per_day, agents=agents, task_types=task_types)
    missing = dict(missing_task_type_share=0.02, missing_quality_share=0.05)
    cfg = SimulationConfig(seed=seed, truth_seed=seed, end_date=END, **size, **missing, **truth)
    return SimulationTruth(cfg), generate_table(cfg, lineage=True)


@pytest.fixture(scope="module")
def events():
    return simulated(task_types=6, agents=4, days=5, events_per_day=1200, seed=1)


@pytest.fixture(scope="module")
def daily(events):
    return daily_stats(events[1])


def expected_counts(frame: pd.DataFrame, a0: float, b0: float, weight=None) -> pd.DataFrame:
    """Independent pandas recomputation of alpha/beta at the task level from raw events."""
    f = frame.copy()
    f["task"] = f["task_type"].fillna(f["action_type"]).fillna("unspecified")
    q = f["quality_score"].fillna(0.5)
    f["w"] = 1.0 if weight is None else weight(f)
    f["a"] = f["w"] * np.select([f["status"] == "success", f["status"] == "partial"], [1.0, q], 0.0)
    f["b"] = f["w"] * np.select(
        [f["status"].isin(["failure", "timeout"]), f["status"] == "partial"], [1.0, 1 - q], 0.0
    )
    g = f.groupby(["task", "agent_name"]).agg(a=("a", "sum"), b=("b", "sum"), n=("a", "size"))
    g["alpha"] = a0 + g["a"]
    g["beta"] = b0 + g["b"]
    return g


def test_posterior_table_matches_counts(events, daily):
    _, table = events
    post = compute_posteriors(daily, alpha0=2.0, beta0=3.0)
    assert list(post.columns) == POSTERIOR_COLUMNS
    assert not post.duplicated(["task_type", "context_key", "context_value", "agent_name"]).any()
    broad = post[(post.context_key == "*") & (post.task_type != "*")].set_index(["task_type", "agent_name"])
    exp = expected_counts(table.to_pandas(), 2.0, 3.0)
    exp.index.names = ["task_type", "agent_name"]
    joined = broad.join(exp, rsuffix="_exp", how="outer")
    assert np.allclose(joined["alpha"], joined["alpha_exp"]) and np.allclose(
        joined["beta"], joined["beta_exp"]
    )
    assert (joined["n_events"] == joined["n"]).all()
    # Without decay, alpha + beta - priors = counted outcomes = n_events.
    assert np.allclose(post["alpha"] + post["beta"] - 5.0, post["n_events"])
    assert np.allclose(post["successes"] + post["failures"] + post["partials"], post["n_events"])
    # Pooled level and context buckets add up.
    pooled = post[(post.task_type == "*") & (post.context_key == "*")].set_index("agent_name")["n_events"]
    assert pooled.sum() == table.num_rows
    cx = post[(post.task_type != "*") & (post.context_key == "complexity")]["n_events"].sum()
    assert cx == table.num_rows
    # Mean, interval, P(best).
    assert np.allclose(post["mean"], post["alpha"] / (post["alpha"] + post["beta"]))
    assert np.allclose(post["ci_low"], stats.beta.ppf(0.025, post["alpha"], post["beta"]))
    assert ((post["ci_low"] <= post["mean"]) & (post["mean"] <= post["ci_high"])).all()
    sums = post.groupby(["task_type", "context_key", "context_value"])["p_best"].sum()
    assert np.allclose(sums, 1.0)


def test_p_best_is_seeded_and_sensible(daily):
    a = compute_posteriors(daily, seed=7)
    b = compute_posteriors(daily, seed=7)
    assert a["p_best"].equals(b["p_best"])
    broad = a[(a.context_key == "*") & (a.task_type != "*")]
    # The agent with the highest mean has the highest P(best) in each task.
    top_mean = broad.loc[broad.groupby("task_type")["mean"].idxmax(), "agent_name"].to_numpy()
    top_pbest = broad.loc[broad.groupby("task_type")["p_best"].idxmax(), "agent_name"].to_numpy()
    assert (top_mean == top_pbest).all()


def test_decay_weights_old_days_less(events, daily):
    _, table = events
    half_life = 2.0
    post = compute_posteriors(daily, alpha0=1, beta0=1, half_life_days=half_life)
    frame = table.to_pandas()
    last_day = frame["timestamp"].dt.tz_convert("UTC").dt.normalize().max()

    def weight(f):
        age = (last_day - f["timestamp"].dt.tz_convert("UTC").dt.normalize()).dt.days
        return decay_factor(half_life) ** age

    exp = expected_counts(frame, 1, 1, weight)
    exp.index.names = ["task_type", "agent_name"]
    broad = post[(post.context_key == "*") & (post.task_type != "*")].set_index(["task_type", "agent_name"])
    joined = broad.join(exp, rsuffix="_exp")
    assert np.allclose(joined["alpha"], joined["alpha_exp"]) and np.allclose(
        joined["beta"], joined["beta_exp"]
    )
    assert (post["alpha"] + post["beta"] - 2 < post["n_events"]).all()
    assert decay_factor(factor=0.9) == 0.9 and decay_factor() == 1.0
    with pytest.raises(ValueError):
        decay_factor(half_life_days=0)


def test_recommend_shape_and_cold_start(daily):
    post = compute_posteriors(daily)
    rec = Recommender(post)
    out = recommend(post, "task_001", {"complexity": "high"}, top_k=3, mode="mean")
    assert set(out) == {"recommendations", "model_score", "timestamp"}
    assert [r["rank"] for r in out["recommendations"]] == [1, 2, 3]
    assert set(out["recommendations"][0]) == {"agent_name", "score", "rank"}
    bucket = post[
        (post.task_type == "task_001") & (post.context_key == "complexity") & (post.context_value == "high")
    ]
    assert out["recommendations"][0]["agent_name"] == bucket.loc[bucket["mean"].idxmax(), "agent_name"]
    assert out["model_score"] == pytest.approx(bucket["mean"].max())
    # Unknown context value -> the task-level posterior.
    task_level = rec.recommend("task_001", mode="mean")
    assert (
        rec.recommend("task_001", {"complexity": "galactic"}, mode="mean")["recommendations"]
        == task_level["recommendations"]
    )
    # Unknown task type -> all task types pooled; with a known context, the pooled bucket.
    pooled = post[(post.task_type == "*") & (post.context_key == "*")]
    unknown = rec.recommend("never_seen", mode="mean")
    assert unknown["recommendations"][0]["agent_name"] == pooled.loc[pooled["mean"].idxmax(), "agent_name"]
    assert unknown["model_score"] == pytest.approx(pooled["mean"].max())
    pooled_high = post[(post.task_type == "*") & (post.context_value == "high")]
    assert rec.recommend("never_seen", {"complexity": "high"}, mode="mean")["model_score"] == pytest.approx(
        pooled_high["mean"].max()
    )
    # Unknown agent -> the prior mean alpha0 / (alpha0 + beta0).
    with_new = Recommender(post, alpha0=1, beta0=1, agents=list(post.agent_name.unique()) + ["Newcomer"])
    scores = {
        r["agent_name"]: r["score"]
        for r in with_new.recommend("task_001", top_k=10, mode="mean")["recommendations"]
    }
    assert scores["Newcomer"] == pytest.approx(0.5)
    # An empty table gives the prior for everyone.
    empty = Recommender(post.iloc[0:0], agents=["A", "B"])
    assert [r["score"] for r in empty.recommend("x", mode="mean")["recommendations"]] == [0.5, 0.5]
    # Thompson mode samples: seeded and within (0, 1).
    t1 = rec.recommend("task_001", mode="thompson", rng=np.random.default_rng(3))
    t2 = rec.recommend("task_001", mode="thompson", rng=np.random.default_rng(3))
    assert t1["recommendations"] == t2["recommendations"]
    with pytest.raises(ValueError):
        rec.recommend("task_001", mode="greedy")


def test_batch_equals_single(daily):
    post = compute_posteriors(daily)
    rec = Recommender(post)
    requests = pd.DataFrame(
        {
            "task_type": ["task_000", "task_003", "unknown", None, "task_002", "task_005"],
            "complexity": ["low", None, "high", "medium", "nope", "high"],
            "domain": ["legal", "medical", None, None, "retail", None],
        }
    )
    batch = rec.recommend_batch(requests, top_k=3, mode="mean")
    frame = recommend_batch(post, requests, top_k=3, mode="mean")
    assert len(frame) == 3 * len(requests)
    for i, req in requests.iterrows():
        ctx = {k: req[k] for k in ("complexity", "domain") if isinstance(req[k], str)}
        single = rec.recommend(req["task_type"], ctx, top_k=3, mode="mean")
        assert batch.response(i)["recommendations"] == single["recommendations"]
        assert batch.model_score[i] == pytest.approx(single["model_score"])
        got = frame[frame.request_index == i].sort_values("rank")["agent_name"].tolist()
        assert got == [r["agent_name"] for r in single["recommendations"]]
    # A `context` column of dicts works the same way.
    as_dicts = pd.DataFrame(
        {
            "task_type": requests["task_type"],
            "context": [
                {k: v for k, v in r.items() if isinstance(v, str)}
                for r in requests[["complexity", "domain"]].to_dict("records")
            ],
        }
    )
    again = rec.recommend_batch(as_dicts, mode="mean")
    assert (again.agents == batch.agents).all()
    # Thompson batch with a seed is reproducible and ranks by the sampled score.
    tb = rec.recommend_batch(requests, mode="thompson", rng=np.random.default_rng(0))
    assert (np.diff(tb.scores, axis=1) <= 0).all()


def test_key_order_of_the_context_never_changes_the_resolution(daily):
    post = compute_posteriors(daily)
    tasks = ["task_000", "task_003", "unknown", None]
    contexts = [("low", "legal"), ("high", "medical"), ("high", "galactic"), ("nope", "retail")]
    requests = pd.DataFrame(
        [(t, c, d) for t in tasks for c, d in contexts], columns=["task_type", "complexity", "domain"]
    )
    swapped = requests[["domain", "task_type", "complexity"]]  # same requests, other column order
    for keys in (None, ("complexity", "domain"), ("domain", "complexity")):
        rec = Recommender(post, context_keys=keys)
        rows = rec.resolve_batch(requests)
        assert (rec.resolve_batch(swapped) == rows).all()
        for i, (t, c, d) in enumerate(requests.itertuples(index=False)):
            one = rec.resolve(t, {"complexity": c, "domain": d})
            assert one == rec.resolve(t, {"domain": d, "complexity": c}) == rows[i]
    # the joint bucket answers first, whatever the configured order
    for keys in (("domain", "complexity"), ("complexity", "domain")):
        rec = Recommender(post, context_keys=keys, min_evidence=0)  # order, not evidence, is tested here
        assert rec.resolve("task_000", {"complexity": "low", "domain": "legal"}) == rec.group_row(
            "task_000", "complexity&domain", '["low","legal"]'
        )
    # without joint rows, the configured order decides which single-key bucket answers when both exist
    post = post[~post["context_key"].str.contains("&", regex=False)]
    by_domain = Recommender(post, context_keys=("domain", "complexity"), min_evidence=0)
    assert by_domain.resolve("task_000", {"complexity": "low", "domain": "legal"}) == by_domain.group_row(
        "task_000", "domain", "legal"
    )
    by_complexity = Recommender(post, context_keys=("complexity",), min_evidence=0)  # then the others by name
    assert by_complexity.resolve("task_000", {"domain": "legal", "complexity": "low"}) == (
        by_complexity.group_row("task_000", "complexity", "low")
    )
    assert by_complexity.resolve("task_000", {"domain": "legal"}) == by_complexity.group_row(
        "task_000", "domain", "legal"
    )


def test_thin_context_buckets_back_off_by_evidence(daily):
    """joint bucket -> single keys in the configured order -> task level, each passed over when thinner
    than min_evidence; single and batch resolution agree at every threshold."""
    post = compute_posteriors(daily)
    # a bucket answers when some agent has min_evidence events in it: its best-measured agent
    evidence = post.groupby(["task_type", "context_key", "context_value"])["n_events"].max()
    task, ctx = "task_000", {"domain": "legal", "complexity": "low"}
    joint = ("complexity&domain", '["low","legal"]')
    joint_n = evidence.loc[(task, *joint)]
    bucket_n = evidence.loc[(task, "complexity", "low")]
    domain_n = evidence.loc[(task, "domain", "legal")]
    assert 0 < joint_n < min(bucket_n, domain_n)  # a joint bucket holds the events of both its keys only

    def resolved(min_evidence: float) -> tuple[Recommender, int]:
        rec = Recommender(post, context_keys=("complexity", "domain"), min_evidence=min_evidence)
        row = rec.resolve(task, ctx)
        assert (rec.resolve_batch(pd.DataFrame([{"task_type": task, **ctx}])) == row).all()
        return rec, row

    rec, row = resolved(joint_n)  # enough evidence: the joint bucket answers
    assert row == rec.group_row(task, *joint)
    rec, row = resolved(joint_n + 1)  # the joint bucket too thin: the first configured key
    assert row == rec.group_row(task, "complexity", "low")
    rec, row = resolved(bucket_n + 1)  # the complexity bucket too thin: the next key, then the task level
    expected = rec.group_row(task, "domain", "legal") if domain_n > bucket_n else rec.group_row(task)
    assert row == expected
    rec, row = resolved(evidence.max() + 1)
    assert row == rec.group_row(task)
    with pytest.raises(ValueError, match="min_evidence"):
        Recommender(post, min_evidence=-1)


def test_top1_is_true_best_for_95_percent_of_task_types():
    truth, table = simulated(task_types=40, agents=4, days=10, events_per_day=40 * 60, seed=11, gap=0.15)
    # 600 events per task type
    rec = Recommender(compute_posteriors(daily_stats(table)))
    best = truth.best_agents(0)
    hits = np.mean(
        [
            rec.recommend(t, mode="mean")["recommendations"][0]["agent_name"] == best[t]
            for t in truth.config.task_types
        ]
    )
    assert hits >= 0.95


def test_decay_follows_a_switch_of_the_best_agent():
    """30 task types, 4 agents, 80 events per task type and day; the best agent switches on day 20 of 30.

    With a half-life of 2 days, the top-1 is the new best for >= 85% of task types 4 days after the switch;
    without decay it still names the old best 10 days after the switch."""
    truth, table = simulated(
        task_types=30,
        agents=4,
        days=30,
        events_per_day=30 * 80,
        seed=5,
        gap=0.15,
        switch_day=20,
        switch_task_types="all",
    )
    start = END - timedelta(days=29)  # the first simulated day
    daily = daily_stats(table)
    switch_date = start + timedelta(days=20)
    new_best = truth.best_agents(20)

    def share(as_of, half_life):
        rec = Recommender(compute_posteriors(daily, half_life_days=half_life, as_of=as_of, n_samples=200))
        return np.mean(
            [
                rec.recommend(t, mode="mean")["recommendations"][0]["agent_name"] == new_best[t]
                for t in truth.config.task_types
            ]
        )

    assert share(switch_date + timedelta(days=4), 2.0) >= 0.85
    assert share(switch_date + timedelta(days=9), None) <= 0.1


def test_inputs_are_checked_on_entry(daily):
    with pytest.raises(ValueError, match="negative counts"):
        compute_posteriors(daily.assign(failures=-1))
    with pytest.raises(ValueError, match="credible_mass"):
        compute_posteriors(daily, credible_mass=1.5)
    with pytest.raises(ValueError, match="n_samples"):
        compute_posteriors(daily, n_samples=0)
    post = compute_posteriors(daily, n_samples=10)
    with pytest.raises(ValueError, match="priors"):
        Recommender(post, alpha0=0)
    rec = Recommender(post)
    with pytest.raises(ValueError, match="task_type"):
        rec.recommend_batch(pd.DataFrame({"complexity": ["low"]}))
    with pytest.raises(ValueError, match="index rows"):
        rec.recommend_rows(np.array([-1]))  # would silently wrap to the prior row
    with pytest.raises(ValueError, match="integer"):
        rec.recommend_rows(np.array([0.0]))
