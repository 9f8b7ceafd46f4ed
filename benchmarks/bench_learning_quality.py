"""Learning quality on simulated worlds with known truth: does the recommended agent of each (task type,
complexity, domain) cell match the true best, and what is its true reward against the oracle?

    .venv/bin/python benchmarks/bench_learning_quality.py [--events 140000] [--days 7] [--seed 0]

Two worlds from the simulator (4 agents, 6 task types, 3 complexities x 4 domains = 72 cells), logged by the
simulator's epsilon-greedy router (propensities recorded): "joint", where each (complexity, domain) cell has
a specialist agent (`joint_context_effect`), and "additive", today's world (context effects add up, so the
task type alone already names the best agent). Every approach learns from the same logged events (reward:
the graded rule) and is scored greedily per cell:
    pipeline, joint contexts       the learning cycle's posteriors (`train_candidate`, posteriors only)
    pipeline, single keys          the same posteriors without their joint rows (the resolution before joints)
    pipeline, logistic model       the cycle's scikit-learn contextual model (agent x each key)
    MABWiser LinTS / LinUCB        one-hot task, complexity, domain; "+ joint" adds a complexity x domain one-hot
    MABWiser KNearest              neighbourhood policy (k nearest contexts, greedy means) on the same one-hots
    VW cb_explore_adf              shared task/complexity/domain, action agent, -q sa ("+ joint": --cubic ssa)
Columns: share of cells (with at least --min-cell-events logged events) whose recommendation is the true best;
true expected success of the recommendations and of the oracle (best agent per cell); fit seconds (the
three pipeline rows share one training by the cycle).
"""

from __future__ import annotations

import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import _common
import numpy as np
import pandas as pd

from learning_pipeline.lib.bandit import contexts
from learning_pipeline.lib.bandit.policy import RoutingPolicy, fit_contextual_model
from learning_pipeline.lib.learning import cycle
from learning_pipeline.lib.learning.data import held_out_events, joint_cells
from learning_pipeline.lib.simulation import SimulationConfig, SimulationTruth, write_lake
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection

END = date(2025, 2, 28)
KEYS = ("complexity", "domain")
WORLDS = {"joint": 2.5, "additive": 0.0}  # joint_context_effect


def learn_pipeline(con, start: date, end: date) -> dict[str, object]:
    """Scorers (cells frame -> (m, k) scores, agents) of the pipeline's variants, trained by the cycle."""
    config = cycle.CycleConfig(context_keys=KEYS, contextual_model=False, n_bootstrap=10)
    window = cycle.Window(start, end + timedelta(days=1), end + timedelta(days=1))
    trained = cycle.train_candidate(con, window, config).policy
    single = RoutingPolicy(
        trained.posteriors[~trained.posteriors["context_key"].map(contexts.is_joint)],
        trained.agents,
        KEYS,
        params=trained.params,
    )
    cells = joint_cells(con, start, end, KEYS, config.reward_rule)
    sums = cells.groupby(["task_type", *KEYS, "agent_name"], as_index=False)[["n", "reward_sum"]].sum()
    model = RoutingPolicy(trained.posteriors, trained.agents, KEYS, params=trained.params)
    model.model = fit_contextual_model(sums, KEYS)
    return {
        "pipeline, joint contexts": trained,
        "pipeline, single keys": single,
        "pipeline, logistic model": model,
    }


def categories(frame: pd.DataFrame, joint: bool) -> list[pd.Series]:
    """The categorical features of the baselines: task, complexity, domain (+ the complexity x domain cell)."""
    parts = [frame["task_type"], frame["complexity"], frame["domain"]]
    if joint:
        parts.append(frame["complexity"] + "|" + frame["domain"])
    return [p.astype(str) for p in parts]


def one_hot(parts: list[pd.Series], levels: list[list[str]]) -> np.ndarray:
    return np.hstack(
        [
            (p.to_numpy()[:, None] == np.array(lv)[None, :]).astype(float)
            for p, lv in zip(parts, levels, strict=True)
        ]
    )


def learn_mabwiser(events: pd.DataFrame, cells: pd.DataFrame, agents: list[str]) -> dict[str, np.ndarray]:
    from mabwiser.mab import MAB, LearningPolicy, NeighborhoodPolicy

    out = {}
    for joint in (False, True):
        parts = categories(events, joint)
        levels = [sorted(p.unique()) for p in parts]
        x, x_cells = one_hot(parts, levels), one_hot(categories(cells, joint), levels)
        suffix = " + joint" if joint else ""
        policies = {f"MABWiser LinTS{suffix}": (LearningPolicy.LinTS(alpha=0.1), None)}
        policies[f"MABWiser LinUCB{suffix}"] = (LearningPolicy.LinUCB(alpha=0.1), None)
        if not joint:
            policies["MABWiser KNearest (k=200)"] = (
                LearningPolicy.EpsilonGreedy(epsilon=0.0),
                NeighborhoodPolicy.KNearest(k=200),
            )
        for name, (learning, neighborhood) in policies.items():
            t0 = time.perf_counter()
            mab = MAB(arms=agents, learning_policy=learning, neighborhood_policy=neighborhood, seed=0)
            mab.fit(events["agent_name"].to_numpy(), events["reward"].to_numpy(float), x)
            expectations = mab.predict_expectations(x_cells)
            scores = np.array([[e[a] for a in agents] for e in expectations])
            out[name] = (scores, time.perf_counter() - t0)
    return out


def vw_lines(task: str, complexity: str, domain: str, agents: list[str], chosen=None) -> list[str]:
    lines = [f"shared |s task={task} cx={complexity} dom={domain}"]
    for agent in agents:
        label = f"0:{chosen[1]}:{chosen[2]} " if chosen is not None and chosen[0] == agent else ""
        lines.append(f"{label}|a agent={agent}")
    return lines


def learn_vw(
    events: pd.DataFrame, cells: pd.DataFrame, agents: list[str]
) -> dict[str, tuple[np.ndarray, float]]:
    from vowpalwabbit import Workspace

    out = {}
    for name, flags in (("VW cb_explore_adf", "-q sa"), ("VW cb_explore_adf + joint", "-q sa --cubic ssa")):
        t0 = time.perf_counter()
        vw = Workspace(f"--cb_explore_adf --epsilon 0.0 {flags} --quiet --random_seed 0")
        rows = events[["task_type", "complexity", "domain", "agent_name", "reward", "selection_propensity"]]
        for task, cx, dom, agent, reward, prob in rows.itertuples(index=False):
            vw.learn(vw_lines(task, cx, dom, agents, (agent, 1.0 - reward, prob)))  # cost = 1 - reward
        scores = np.zeros((len(cells), len(agents)))
        for i, (task, cx, dom) in enumerate(
            cells[["task_type", "complexity", "domain"]].itertuples(index=False)
        ):
            pmf = vw.predict(vw_lines(task, cx, dom, agents))
            scores[i] = pmf
        vw.finish()
        out[name] = (scores, time.perf_counter() - t0)
    return out


def evaluate_world(name: str, effect: float, args, root: Path) -> list[dict]:
    config = SimulationConfig(
        days=args.days,
        events_per_day=args.events // args.days,
        seed=args.seed,
        truth_seed=args.seed,
        end_date=END,
        agents=4,
        task_types=6,
        propensities=True,
        joint_context_effect=effect,
    )
    truth = SimulationTruth(config)
    paths = LakePaths.at(root / name)
    write_lake(config, paths.root)
    start, end = config.start_date, config.end_date
    best = truth.best_agents_by_context()
    cells = best[["task_type", *KEYS]].copy()
    with lake_connection(paths) as con:
        t0 = time.perf_counter()
        pipeline = learn_pipeline(con, start, end)
        pipeline_seconds = time.perf_counter() - t0
        events, _ = held_out_events(con, start, end, KEYS, "graded")
    counts = events.groupby(["task_type", *KEYS]).size()
    logged = cells.merge(counts.rename("n").reset_index(), how="left", on=["task_type", *KEYS])["n"]
    enough = (logged.fillna(0) >= args.min_cell_events).to_numpy()
    agents = sorted(events["agent_name"].unique())
    scored = {n: (p.score_contexts(cells), pipeline_seconds, list(p.agents)) for n, p in pipeline.items()}
    for n, (s, t) in {**learn_mabwiser(events, cells, agents), **learn_vw(events, cells, agents)}.items():
        scored[n] = (s, t, agents)
    rows = []
    oracle = truth.oracle_value()
    for approach, (scores, seconds, names) in scored.items():
        top = np.asarray(names, dtype=object)[np.argmax(scores, axis=1)]
        hit = top == best["best_agent"].to_numpy()
        policy = cells.assign(agent_name=top)
        rows.append(
            {
                "world": name,
                "approach": approach,
                "cells": int(enough.sum()),
                "true_best_share": float(hit[enough].mean()),
                "value": truth.policy_value(policy),
                "oracle": oracle,
                "fit_s": seconds,
            }
        )
    rows.append(
        {
            "world": name,
            "approach": "best agent per task type (truth)",
            "cells": int(enough.sum()),
            "true_best_share": float(
                (best["task_type"].map(truth.best_agents()) == best["best_agent"])[enough].mean()
            ),
            "value": truth.policy_value(truth.best_agents()),
            "oracle": oracle,
            "fit_s": 0.0,
        }
    )
    return rows


def main() -> int:
    parser = _common.parser(__doc__)
    parser.add_argument("--events", type=int, default=140_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-cell-events", type=int, default=contexts.DEFAULT_MIN_EVIDENCE)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lp_quality_"))
    ok = False
    try:
        rows = [row for name, effect in WORLDS.items() for row in evaluate_world(name, effect, args, root)]
        table = pd.DataFrame(rows)
        table["value/oracle"] = table["value"] / table["oracle"]
        print(table.to_markdown(index=False, floatfmt=".3f"))
        ok = True
    finally:
        code = _common.finish(root, ok, args.keep)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
