"""Closed-loop benchmark: the decision service, the decision log, daily ingest and learning cycles, against
per-event learners on the same request stream.

Simulated clients ask the decision service for an agent (task type and a context of complexity x domain),
act, and record the outcome drawn from the simulator's truth (context-dependent success; the best agents of
every task type change on `--switch-day`) with the decision_id, through the SDK recorder. Each simulated
day ends like a real one: the day's outcomes and decisions are ingested (outcome_events, agent_decisions
through dagster.materialize), a learning cycle evaluates a candidate on the day's served traffic
(propensities from the decision log only), and an accepted candidate is approved and made live by the
harness (the person's step), serving from the next day.

Side by side on the same requests (same context, same uniform draw deciding success for any agent):
uniform random, the best fixed agent per task type (in hindsight, over the whole horizon), MABWiser's
Thompson sampling per context cell and Vowpal Wabbit's `--cb_explore_adf`, both learning per event.

    .venv/bin/python benchmarks/bench_closed_loop.py --days 12 --requests-per-day 3000 --switch-day 6 \
        --out benchmarks/out/closed_loop

Prints a table per day (reward, regret against the oracle, logged-propensity share, the live version's
offline estimate and interval vs the value it delivered) and writes cumulative_regret.png and results.json.
Runs in process with a simulated clock (no daemon): the freshness figure comes from bench_freshness.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

BASELINES = ("uniform", "best_fixed", "mabwiser_ts", "vw_cb_adf")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def build_world(args):
    from learning_pipeline.lib.simulation.simulate import SimulationConfig, SimulationTruth

    end = datetime.now(UTC).date() - timedelta(days=1)
    cfg = SimulationConfig(
        days=args.days,
        events_per_day=args.requests_per_day,
        seed=args.seed,
        end_date=end,
        switch_day=args.switch_day,
        switch_task_types="all",
        gap=args.gap,
    )
    return cfg, SimulationTruth(cfg)


def request_stream(cfg, truth, n: int, rng):
    """(task, complexity, domain) codes and one uniform draw per request."""
    t = rng.choice(len(cfg.task_types), size=n, p=truth.task_probs)
    flat = rng.choice(truth.context_probs.size, size=n, p=truth.context_probs.ravel())
    c, d = np.unravel_index(flat, truth.context_probs.shape)
    return t, c, d, rng.random(n)


class Baselines:
    def __init__(self, cfg, names, seed):
        self.cfg, self.names = cfg, names
        self.rng = np.random.default_rng(seed)
        self.mab: dict = {}
        self.vw = None
        if "vw_cb_adf" in names:
            from vowpalwabbit import Workspace

            self.vw = Workspace(f"--cb_explore_adf --epsilon 0.05 --quiet --random_seed {seed}")

    def _vw_example(self, task, cx, dom):
        shared = f"shared |s task={task} cx={cx} dom={dom} tc={task}_{cx} td={task}_{dom}"
        return [shared] + [f"|a agent={a}" for a in self.cfg.agents]

    def choose(self, name, task, cx, dom, best_fixed):
        n_agents = len(self.cfg.agents)
        if name == "uniform":
            return int(self.rng.integers(n_agents))
        if name == "best_fixed":
            return best_fixed[task]
        if name == "mabwiser_ts":
            from mabwiser.mab import MAB, LearningPolicy

            key = (task, cx, dom)
            if key not in self.mab:
                self.mab[key] = MAB(
                    list(range(n_agents)),
                    LearningPolicy.ThompsonSampling(),
                    seed=int(self.rng.integers(1 << 30)),
                )
                self.mab[key].fit(
                    list(range(n_agents)), [0] * n_agents
                )  # one pseudo-failure per arm (a Beta(1, 2) start)
            return int(self.mab[key].predict())
        if name == "vw_cb_adf":
            probs = np.asarray(self.vw.predict(self._vw_example(task, cx, dom)), float)
            return int(self.rng.choice(n_agents, p=probs / probs.sum())), probs
        raise ValueError(name)

    def learn(self, name, task, cx, dom, arm, reward, prob=None):
        if name == "mabwiser_ts":
            self.mab[(task, cx, dom)].partial_fit([arm], [reward])
        elif name == "vw_cb_adf":
            example = self._vw_example(task, cx, dom)
            example[arm + 1] = f"0:{-reward}:{prob} {example[arm + 1]}"
            self.vw.learn(example)


def run(args) -> dict:
    import dagster as dg

    from learning_pipeline.defs.decisions.assets import agent_decisions
    from learning_pipeline.defs.events.assets import outcome_events
    from learning_pipeline.defs.resources import LakeResource
    from learning_pipeline.lib.autonomy import operations
    from learning_pipeline.lib.events.decisions import DecisionLogger
    from learning_pipeline.lib.ingest.recorder import OutcomeRecorder
    from learning_pipeline.lib.learning.cycle import CycleConfig, run_cycle
    from learning_pipeline.lib.learning.registry import default_tracking_uri
    from learning_pipeline.lib.storage.lake import LakePaths
    from learning_pipeline.service.decisions import DecisionService

    cfg, truth = build_world(args)
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="closed_loop_"))
    paths = LakePaths.at(root).ensure()
    uri = default_tracking_uri(root)
    lake = LakeResource(data_dir=str(root))
    cycle_cfg = CycleConfig(
        window_days=args.window_days,
        eval_days=1,
        n_bootstrap=200,
        contextual_model=False,
        online_epoch_seconds=args.online_epoch_seconds,
    )
    rng = np.random.default_rng(args.seed)
    agents = list(cfg.agents)
    # best fixed agent per task type in hindsight: highest mean success over contexts and the whole horizon
    regimes = [truth.success[truth.regime(day)] for day in range(args.days)]  # each (A, T, C, D)
    mean_p = np.mean([(p * truth.context_probs[None, None]).sum(axis=(2, 3)) for p in regimes], axis=0)
    best_fixed = {task: int(a) for task, a in zip(cfg.task_types, mean_p.argmax(axis=0), strict=True)}
    baselines = Baselines(cfg, [b for b in args.baselines if b in BASELINES], args.seed + 1)
    names = ["loop", *baselines.names]
    days, live_log = [], []
    service = DecisionService(paths, uri, logger=DecisionLogger(paths, linger_seconds=0.2), seed=args.seed)
    started = time.perf_counter()
    for day in range(args.days):
        date = cfg.day_date(day)
        service.refresh()
        p = regimes[day]  # (A, T, C, D)
        t, c, d, u = request_stream(cfg, truth, args.requests_per_day, rng)
        rewards = {name: np.zeros(len(t)) for name in names}
        logged = 0
        day_start = datetime(date.year, date.month, date.day, tzinfo=UTC)
        with OutcomeRecorder(landing_dir=paths.landing, batch_size=2000, linger_seconds=0.5) as recorder:
            for i in range(len(t)):
                at = day_start + timedelta(seconds=86_000 * i / len(t))
                task, cx, dom = cfg.task_types[t[i]], cfg.complexities[c[i]], cfg.domains[d[i]]
                answer = service.decide(
                    task, {"complexity": cx, "domain": dom}, top_k=1, candidate_agents=agents, at=at
                )
                agent = answer["recommendations"][0]["agent_name"]
                logged += answer["recommendations"][0]["selection_propensity"] > 0
                ok = bool(u[i] < p[agents.index(agent), t[i], c[i], d[i]])
                rewards["loop"][i] = ok
                outcome = {
                    "agent_name": agent,
                    "task_type": task,
                    "status": "success" if ok else "failure",
                    "context": {"complexity": cx, "domain": dom},
                    "decision_id": answer["decision_id"],
                    "timestamp": at.isoformat(),
                    "latency_ms": 100.0,
                }
                recorder.record(outcome)
                service.observe([outcome])  # as POST /outcomes does: a version that learns online sees it
                for name in baselines.names:
                    choice = baselines.choose(name, task, cx, dom, best_fixed)
                    arm, probs = choice if isinstance(choice, tuple) else (choice, None)
                    reward = float(u[i] < p[arm, t[i], c[i], d[i]])
                    rewards[name][i] = reward
                    baselines.learn(name, task, cx, dom, arm, reward, None if probs is None else probs[arm])
        service.logger.flush()
        oracle = p.max(axis=0)[t, c, d]
        iso = date.isoformat()
        for name, asset in (("outcome_events", outcome_events), ("agent_decisions", agent_decisions)):
            result = dg.materialize([asset], partition_key=iso, resources={"lake": lake}, run_config=QUIET)
            assert result.success, f"{name} failed for {iso}"
        row = {
            "day": iso,
            "requests": len(t),
            "propensity_share": logged / len(t),
            "live_version": service.roster.get("live").version if "live" in service.roster else None,
            "oracle": float(oracle.mean()),
        }
        for name in names:
            row[f"reward.{name}"] = float(rewards[name].mean())
            row[f"regret.{name}"] = float((oracle - rewards[name]).sum())
        if day >= 1:  # a cycle needs a training window before the day
            result = run_cycle(paths, iso, cycle_cfg, uri)
            ev = result.evaluation
            row.update(
                estimator=ev.evaluation.gate_estimator,
                accepted=ev.gate.accepted,
                candidate_estimate=ev.gate.candidate_score,
                coverage=ev.evaluation.propensity_coverage,
            )
            est = ev.evaluation.value("candidate", ev.evaluation.gate_estimator)
            if result.registered.accepted:
                version = result.registered.version
                operations.approve_and_go_live(
                    paths, uri, version, "harness", "the harness approves every accepted version"
                )
                live_log.append(
                    {
                        "version": version,
                        "live_from": (date + timedelta(days=1)).isoformat(),
                        "estimate": est.value,
                        "ci_low": est.ci_low,
                        "ci_high": est.ci_high,
                    }
                )
        days.append(row)
        print(json.dumps(row), flush=True)
    service.stop()
    for entry in live_log:  # the value each live version then delivered (mean reward while it served)
        served = [r["reward.loop"] for r in days if r["live_version"] == entry["version"]]
        entry["delivered"] = float(np.mean(served)) if served else None
        entry["days_served"] = len(served)
        entry["inside_interval"] = bool(served) and entry["ci_low"] <= entry["delivered"] <= entry["ci_high"]
    return {
        "days": days,
        "live": live_log,
        "names": names,
        "seconds": time.perf_counter() - started,
        "data_dir": str(root),
    }


def report(result: dict, out: Path | None) -> None:
    names, days = result["names"], result["days"]
    cum = {n: np.cumsum([d[f"regret.{n}"] for d in days]) for n in names}
    print(
        "\n| day | live | reward "
        + " | ".join(names)
        + " | cum. regret "
        + " | ".join(names)
        + " | propensities |"
    )
    for i, d in enumerate(days):
        rewards = " | ".join(f"{d[f'reward.{n}']:.3f}" for n in names)
        regrets = " | ".join(f"{cum[n][i]:.0f}" for n in names)
        print(f"| {d['day']} | v{d['live_version']} | {rewards} | {regrets} | {d['propensity_share']:.0%} |")
    print("\n| version | live from | offline estimate [interval] | delivered | inside |")
    for e in result["live"]:
        delivered = "-" if e["delivered"] is None else f"{e['delivered']:.3f}"
        print(
            f"| v{e['version']} | {e['live_from']} | {e['estimate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}] "
            f"| {delivered} ({e['days_served']} d) | {e['inside_interval']} |"
        )
    learners = [n for n in ("mabwiser_ts", "vw_cb_adf") if n in names]
    if learners:
        best = min(cum[n][-1] for n in learners)
        print(
            f"\nloop cumulative regret {cum['loop'][-1]:.0f} = {cum['loop'][-1] / best:.2f}x the better per-event "
            f"learner ({best:.0f}); {result['seconds']:.0f} s"
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
        for n in names:
            ax.plot(range(1, len(days) + 1), cum[n], marker="o", markersize=3, label=n)
        ax.set_xlabel("simulated day")
        ax.set_ylabel("cumulative regret (successes lost vs oracle)")
        ax.set_title("Closed loop vs per-event learners on the same requests")
        ax.legend()
        fig.savefig(out / "cumulative_regret.png", dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=12)
    parser.add_argument("--requests-per-day", type=int, default=3000)
    parser.add_argument("--switch-day", type=int, default=6)
    parser.add_argument("--window-days", type=int, default=3)
    parser.add_argument("--gap", type=float, default=None)
    parser.add_argument(
        "--online-epoch-seconds",
        type=float,
        default=0.0,
        help="> 0: live versions learn online in epochs of this many simulated seconds (0: frozen)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    report(result, args.out)
    return result


if __name__ == "__main__":
    main()
