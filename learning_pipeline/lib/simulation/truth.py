"""The ground truth of a simulation: success probabilities, best agents, the logging policy, policy values.

The truth is a success probability per (agent, task_type, complexity, domain): a logistic model with one
clearly best agent per task type (optionally switching on `switch_day` for some task types), additive
context effects and, with `joint_context_effect`, a specialist agent per (complexity, domain) cell, so the
best agent depends on the joint context (`best_agents_by_context`). Events are
drawn from it (`events.py`), so anything the pipeline learns can be checked against `SimulationTruth`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date

import numpy as np
import pandas as pd

from learning_pipeline.lib.simulation.config import SimulationConfig, as_date


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _normalized(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


class SimulationTruth:
    """The ground truth of a configuration: success probabilities, best agents, the logging policy."""

    def __init__(self, config: SimulationConfig):
        self.config = config
        cfg = config
        rng = np.random.default_rng([cfg.truth_seed, 0x7A11])
        n_a, n_t = len(cfg.agents), len(cfg.task_types)
        n_c, n_d = len(cfg.complexities), len(cfg.domains)

        lo, hi = _logit(cfg.other_success[0]), _logit(cfg.other_success[1])
        base = rng.uniform(lo, hi, size=(n_a, n_t))
        perm = rng.permutation(n_a)
        best = np.array([perm[t % n_a] for t in range(n_t)])
        base[best, np.arange(n_t)] = _logit(cfg.best_success)
        if cfg.gap is not None:  # the best agent leads the runner-up by `gap` (before context effects)
            others = base.copy()
            others[best, np.arange(n_t)] = -np.inf
            lead = np.minimum(_sigmoid(others.max(axis=0)) + cfg.gap, 0.99)
            base[best, np.arange(n_t)] = np.log(lead / (1 - lead))

        # Context effects: harder tasks succeed less; small agent-specific slopes and domain affinities.
        c_pos = np.linspace(-1.0, 1.0, n_c) if n_c > 1 else np.zeros(1)
        complexity_effect = -0.55 * c_pos[None, :] + rng.normal(0, 0.12, size=(n_a, 1)) * c_pos[None, :]
        domain_effect = rng.normal(0, 0.15, size=(n_a, n_d))
        if "general" in cfg.domains:
            domain_effect[:, cfg.domains.index("general")] = 0.0

        # Joint effect (optional, its own seed so the additive truth stays as it was): a specialist agent per
        # (complexity, domain) cell.
        joint_effect = np.zeros((n_a, n_c, n_d))
        if cfg.joint_context_effect > 0:
            specialist = np.random.default_rng([cfg.truth_seed, 0x101E7]).integers(0, n_a, size=(n_c, n_d))
            c_idx, d_idx = np.meshgrid(np.arange(n_c), np.arange(n_d), indexing="ij")
            joint_effect[specialist, c_idx, d_idx] = cfg.joint_context_effect

        def probs(base_logits: np.ndarray) -> np.ndarray:  # (A, T, C, D)
            x = (
                base_logits[:, :, None, None]
                + complexity_effect[:, None, :, None]
                + domain_effect[:, None, None, :]
                + joint_effect[:, None, :, :]
            )
            return _sigmoid(x)

        switch_types = (
            list(cfg.switch_task_types)
            if cfg.switch_task_types is not None
            else [t for i, t in enumerate(cfg.task_types) if i % 2 == 0]
        )
        self.switch_task_types: tuple[str, ...] = tuple(switch_types) if cfg.switch_day is not None else ()
        base_after = base.copy()
        for task in self.switch_task_types:
            t = cfg.task_types.index(task)
            order = np.argsort(-base[:, t])
            old, new = order[0], order[1]  # the runner-up becomes the best, the old best a mediocre one
            base_after[old, t], base_after[new, t] = base[new, t], base[old, t]

        self.base_logits = (base, base_after)
        self.success = (probs(base), probs(base_after))  # regime 0 before switch_day, 1 from it on
        # Cost and latency per agent (cost_tradeoff): rising with the agent's mean success probability.
        rank = np.argsort(np.argsort(self.success[0].mean(axis=(1, 2, 3)), kind="stable"), kind="stable")
        step = rank / max(n_a - 1, 1)
        (c_lo, c_hi), (l_lo, l_hi) = cfg.tradeoff_cost_usd, cfg.tradeoff_latency_ms
        self.agent_cost_usd = c_lo * (c_hi / c_lo) ** step if cfg.cost_tradeoff else None  # (A,) mean cost
        self.agent_latency_ms = l_lo * (l_hi / l_lo) ** step if cfg.cost_tradeoff else None  # (A,) median
        self.task_probs = _normalized(cfg.task_weights) if cfg.task_weights else np.full(n_t, 1.0 / n_t)
        self.complexity_probs = _normalized(cfg.complexity_weights)
        self.domain_probs = _normalized(cfg.domain_weights)
        # Context weight of each (complexity, domain) cell, independent of the task type.
        self.context_probs = self.complexity_probs[:, None] * self.domain_probs[None, :]

        # The logging policy (what the router of the simulated system did), per task type: (T, A).
        if cfg.logging_policy == "epsilon_greedy":
            # The router prefers the runner-up: learning has something to improve on.
            preferred = np.argsort(-base, axis=0)[1]
            policy = np.full((n_t, n_a), cfg.logging_epsilon / n_a)
            policy[np.arange(n_t), preferred] += 1 - cfg.logging_epsilon
        else:
            noisy = base + rng.normal(0, 0.5, size=base.shape)
            z = np.exp((noisy - noisy.max(axis=0)) / cfg.logging_temperature).T
            policy = z / z.sum(axis=1, keepdims=True)
        self.logging_policy = policy

    # -- regimes and days ------------------------------------------------------------------
    def regime(self, day: int | date | str | None) -> int:
        """0 before the switch, 1 from `switch_day` on. `day` is a day index or a date; None = last day."""
        cfg = self.config
        if cfg.switch_day is None:
            return 0
        if day is None:
            index = cfg.days - 1
        elif isinstance(day, (int, np.integer)):
            index = int(day)
        else:
            index = (as_date(day) - cfg.start_date).days
        return int(index >= cfg.switch_day)

    # -- tables ----------------------------------------------------------------------------
    def success_probabilities(self, day: int | date | str | None = None) -> pd.DataFrame:
        """True P(status == success) per (task_type, complexity, domain, agent) on `day` (default: last day)."""
        cfg = self.config
        p = self.success[self.regime(day)]
        a, t, c, d = np.meshgrid(*(np.arange(s) for s in p.shape), indexing="ij")
        frame = pd.DataFrame(
            {
                "task_type": np.asarray(cfg.task_types)[t.ravel()],
                "complexity": np.asarray(cfg.complexities)[c.ravel()],
                "domain": np.asarray(cfg.domains)[d.ravel()],
                "agent_name": np.asarray(cfg.agents)[a.ravel()],
                "success_prob": p.ravel(),
                "context_weight": self.context_probs[c.ravel(), d.ravel()],
            }
        )
        return frame.sort_values(["task_type", "complexity", "domain", "agent_name"], ignore_index=True)

    def task_success_rates(self, day: int | date | str | None = None) -> pd.DataFrame:
        """True success rate per (task_type, agent), averaged over the context distribution."""
        cfg = self.config
        p = (self.success[self.regime(day)] * self.context_probs[None, None]).sum(axis=(2, 3))  # (A, T)
        a, t = np.meshgrid(np.arange(p.shape[0]), np.arange(p.shape[1]), indexing="ij")
        return pd.DataFrame(
            {
                "task_type": np.asarray(cfg.task_types)[t.ravel()],
                "agent_name": np.asarray(cfg.agents)[a.ravel()],
                "success_rate": p.ravel(),
            }
        ).sort_values(["task_type", "agent_name"], ignore_index=True)

    def best_agents(self, day: int | date | str | None = None) -> dict[str, str]:
        """The true best agent per task type on `day` (context-averaged success rate)."""
        cfg = self.config
        p = (self.success[self.regime(day)] * self.context_probs[None, None]).sum(axis=(2, 3))
        return {task: cfg.agents[int(np.argmax(p[:, t]))] for t, task in enumerate(cfg.task_types)}

    def best_agents_by_context(self, day: int | date | str | None = None) -> pd.DataFrame:
        """The true best agent per (task_type, complexity, domain) on `day`: one row per cell with best_agent,
        best_success_prob, runner_up_agent, gap and the cell's share of the task type's traffic (context_weight)."""
        cfg = self.config
        p = self.success[self.regime(day)]  # (A, T, C, D)
        order = np.argsort(-p, axis=0, kind="stable")
        top = np.take_along_axis(p, order[:2], axis=0)
        t, c, d = (x.ravel() for x in np.meshgrid(*(np.arange(s) for s in p.shape[1:]), indexing="ij"))
        return pd.DataFrame(
            {
                "task_type": np.asarray(cfg.task_types)[t],
                "complexity": np.asarray(cfg.complexities)[c],
                "domain": np.asarray(cfg.domains)[d],
                "best_agent": np.asarray(cfg.agents)[order[0].ravel()],
                "best_success_prob": top[0].ravel(),
                "runner_up_agent": np.asarray(cfg.agents)[order[1].ravel()],
                "gap": (top[0] - top[1]).ravel(),
                "context_weight": self.context_probs[c, d],
            }
        )

    def best_agents_by_day(self) -> pd.DataFrame:
        """One row per (event_date, task_type): best agent, its rate, the runner-up and the gap."""
        cfg = self.config
        rows = []
        for day in range(cfg.days):
            p = (self.success[self.regime(day)] * self.context_probs[None, None]).sum(axis=(2, 3))
            for t, task in enumerate(cfg.task_types):
                order = np.argsort(-p[:, t])
                rows.append(
                    {
                        "event_date": cfg.day_date(day).isoformat(),
                        "day_index": day,
                        "task_type": task,
                        "best_agent": cfg.agents[order[0]],
                        "best_success_rate": float(p[order[0], t]),
                        "runner_up_agent": cfg.agents[order[1]],
                        "runner_up_success_rate": float(p[order[1], t]),
                        "gap": float(p[order[0], t] - p[order[1], t]),
                    }
                )
        return pd.DataFrame(rows)

    # -- policy values ---------------------------------------------------------------------
    def policy_matrix(self, policy) -> np.ndarray:
        """Normalize a routing policy to probabilities of shape (T, C, D, A).

        Accepted: a callable `(task_type, context: dict) -> agent name | {agent: probability}`; a mapping
        task_type -> agent name (or -> {agent: probability}); a DataFrame with columns task_type and
        agent_name (alias `agent`), optional complexity/domain (missing = all contexts) and optional
        probability (default 1, normalized per context). Task types the policy does not cover are routed
        uniformly at random.
        """
        cfg = self.config
        n_t, n_c, n_d, n_a = len(cfg.task_types), len(cfg.complexities), len(cfg.domains), len(cfg.agents)
        agent_index = {a: i for i, a in enumerate(cfg.agents)}
        out = np.zeros((n_t, n_c, n_d, n_a))

        def put(t: int, c: int, d: int, choice) -> None:
            if isinstance(choice, str):
                if choice not in agent_index:
                    raise ValueError(f"policy chose unknown agent {choice!r}")
                out[t, c, d, agent_index[choice]] += 1.0
            elif isinstance(choice, Mapping):
                for agent, prob in choice.items():
                    if agent not in agent_index:
                        raise ValueError(f"policy chose unknown agent {agent!r}")
                    out[t, c, d, agent_index[agent]] += float(prob)
            else:
                raise TypeError(
                    f"policy returned {type(choice).__name__}; expected an agent name or a mapping"
                )

        if isinstance(policy, pd.DataFrame):
            frame = policy.rename(columns={"agent": "agent_name"})
            for row in frame.itertuples(index=False):
                if row.task_type not in cfg.task_types:
                    continue
                t = cfg.task_types.index(row.task_type)
                cs = (
                    [cfg.complexities.index(row.complexity)]
                    if "complexity" in frame and pd.notna(getattr(row, "complexity", None))
                    else range(n_c)
                )
                ds = (
                    [cfg.domains.index(row.domain)]
                    if "domain" in frame and pd.notna(getattr(row, "domain", None))
                    else range(n_d)
                )
                prob = float(getattr(row, "probability", 1.0)) if "probability" in frame else 1.0
                for c in cs:
                    for d in ds:
                        put(t, c, d, {row.agent_name: prob})
        elif callable(policy):
            for t, task in enumerate(cfg.task_types):
                for c, cx in enumerate(cfg.complexities):
                    for d, dom in enumerate(cfg.domains):
                        put(t, c, d, policy(task, {"complexity": cx, "domain": dom}))
        elif isinstance(policy, Mapping):
            for task, choice in policy.items():
                if task in cfg.task_types:
                    t = cfg.task_types.index(task)
                    for c in range(n_c):
                        for d in range(n_d):
                            put(t, c, d, choice)
        else:
            raise TypeError("policy must be a callable, a mapping or a DataFrame")
        totals = out.sum(axis=-1, keepdims=True)
        return np.where(totals > 0, out / np.where(totals > 0, totals, 1.0), 1.0 / n_a)

    def policy_value(self, policy, day: int | date | str | None = None) -> float:
        """The true expected success rate of a routing policy over the context distribution on `day`."""
        pi = self.policy_matrix(policy)  # (T, C, D, A)
        p = np.moveaxis(self.success[self.regime(day)], 0, -1)  # (T, C, D, A)
        per_cell = (pi * p).sum(axis=-1)
        weights = self.task_probs[:, None, None] * self.context_probs[None]
        return float((per_cell * weights).sum())

    def oracle_value(self, day: int | date | str | None = None) -> float:
        """The best achievable expected success rate (best agent per task type and context)."""
        p = self.success[self.regime(day)].max(axis=0)  # (T, C, D)
        return float((p * self.task_probs[:, None, None] * self.context_probs[None]).sum())

    def logging_policy_value(self, day: int | date | str | None = None) -> float:
        """The true value of the policy that produced the events (uniform without propensities)."""
        cfg = self.config
        if not cfg.propensities:
            return self.policy_value({t: {a: 1.0 for a in cfg.agents} for t in cfg.task_types}, day)
        table = {
            task: dict(zip(cfg.agents, self.logging_policy[t].tolist(), strict=False))
            for t, task in enumerate(cfg.task_types)
        }
        return self.policy_value(table, day)

    def to_dict(self) -> dict:
        cfg = self.config
        frames = {}
        for regime in sorted({self.regime(d) for d in range(cfg.days)} | {0}):
            day = 0 if regime == 0 else cfg.switch_day
            frames["before_switch" if regime == 0 else "from_switch"] = self.success_probabilities(
                day
            ).to_dict("records")
        return {
            "config": cfg.to_dict(),
            "start_date": cfg.start_date.isoformat(),
            "end_date": cfg.end_date.isoformat(),
            "switch_date": cfg.day_date(cfg.switch_day).isoformat() if cfg.switch_day is not None else None,
            "switch_task_types": list(self.switch_task_types),
            "task_probs": dict(zip(cfg.task_types, self.task_probs.tolist(), strict=False)),
            "complexity_probs": dict(zip(cfg.complexities, self.complexity_probs.tolist(), strict=False)),
            "domain_probs": dict(zip(cfg.domains, self.domain_probs.tolist(), strict=False)),
            "best_agents_by_day": self.best_agents_by_day().to_dict("records"),
            "success_probabilities": frames,
            "logging_policy": {
                task: dict(zip(cfg.agents, self.logging_policy[t].tolist(), strict=False))
                for t, task in enumerate(cfg.task_types)
            }
            if cfg.propensities
            else None,
            "agent_costs": {
                agent: {"cost_usd": float(cost), "latency_ms": float(latency)}
                for agent, cost, latency in zip(
                    cfg.agents, self.agent_cost_usd, self.agent_latency_ms, strict=True
                )
            }
            if cfg.cost_tradeoff
            else None,
            "values": {
                "oracle": self.oracle_value(),
                "logging_policy": self.logging_policy_value(),
            },
        }
