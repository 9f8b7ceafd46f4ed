"""A seeded simulator of outcome events with a known ground truth.

The truth is a success probability per (agent, task_type, complexity, domain): a logistic model with one
clearly best agent per task type (optionally switching on `switch_day` for some task types). Events are
drawn from it, so anything the pipeline learns can be checked against `SimulationTruth`.

Generation is vectorized: numpy draws the columns, DuckDB composes the strings and JSON lines, and the
lines land as atomically published JSONL files in the landing zone. Work is split into independent units
(one day, or a slice of a busy day) seeded by `(seed, day, slice)`, so the output depends on the seed and
the volume only, not on file sizes, and memory stays bounded for tens of millions of events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from learning_pipeline.lib.events.schema import EVENT_FIELDS, LINEAGE_FIELDS, OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.storage.lake import LakePaths, new_batch_name, write_bytes_atomic

# The two examples of the realtime feedback pipeline's event schema, verbatim.
SEED_EXAMPLE_EVENTS: tuple[dict, ...] = (
    {
        "event_id": "550e8400-e29b-41d4-a716-446655440000",
        "run_id": "660e8400-e29b-41d4-a716-446655440000",
        "agent_name": "react_agent",
        "agent_type": "reasoning",
        "action_type": "process_query",
        "timestamp": "2025-10-09T12:34:56.789Z",
        "start_time": "2025-10-09T12:34:56.500Z",
        "end_time": "2025-10-09T12:34:56.789Z",
        "duration_ms": 289.5,
        "status": "success",
        "severity": "info",
        "latency_ms": 289.5,
        "llm_latency_ms": 250.3,
        "tokens_used": 150,
        "output": {"result": "Analysis complete", "confidence": 0.95},
        "correlation_id": "workflow-123",
        "workflow_id": "compliance-report",
        "tags": ["reasoning", "analysis"],
        "metadata": {"model": "gpt-4", "provider": "openai"},
    },
    {
        "event_id": "770e8400-e29b-41d4-a716-446655440000",
        "run_id": "880e8400-e29b-41d4-a716-446655440000",
        "agent_name": "data_processor",
        "agent_type": "processing",
        "action_type": "transform_data",
        "timestamp": "2025-10-09T12:35:10.123Z",
        "start_time": "2025-10-09T12:35:09.000Z",
        "end_time": "2025-10-09T12:35:10.123Z",
        "duration_ms": 1123.4,
        "status": "failure",
        "severity": "error",
        "latency_ms": 1123.4,
        "error_message": "Invalid data format",
        "error_type": "ValueError",
        "stack_trace": "Traceback (most recent call last):\n  ...",
        "retry_count": 2,
        "tags": ["data", "processing", "error"],
        "metadata": {"input_size": 1024, "validation_failed": True},
    },
)

DEFAULT_AGENTS = (
    "react_agent",
    "debate_agent",
    "evaluator_agent",
    "governor_agent",
    "planner_agent",
    "coder_agent",
)
DEFAULT_TASK_TYPES = (
    "analysis",
    "compliance_analysis",
    "code_generation",
    "summarization",
    "question_answering",
    "planning",
    "data_extraction",
    "risk_assessment",
)
COMPLEXITIES = ("low", "medium", "high")
DOMAINS = ("financial", "legal", "medical", "general")

# Kinds of bad records; the names are the quarantine reasons validation should give them.
BAD_RECORD_KINDS = (
    "malformed_json",
    "missing_required_field",
    "wrong_type",
    "out_of_range",
    "unknown_status",
    "future_timestamp",
)
OVERSIZED_KIND = "oversized_payload"
OVERSIZED_BYTES = 1_100_000  # > 1 MiB
BAD_EVENT_ID_PREFIX = "bad-"  # bad records carry event_id `bad-<kind>-<uuid>` (where an id is present)

_AGENT_TYPES = ("reasoning", "debate", "evaluation", "governance", "planning", "coding", "processing")
_MODELS = (  # model, provider, USD per 1k tokens
    ("gpt-4o", "openai", 0.005),
    ("claude-3-5-sonnet", "anthropic", 0.006),
    ("gpt-4o-mini", "openai", 0.0006),
    ("llama-3.1-70b", "meta", 0.0009),
    ("gemini-1.5-pro", "google", 0.0035),
    ("mistral-large", "mistral", 0.002),
)
_VERBS = ("analyze", "review", "write", "summarize", "answer", "plan", "extract", "assess", "classify")
_NOUNS = ("report", "contract", "module", "document", "question", "roadmap", "invoice", "portfolio", "ticket")
_ERRORS = ("ValueError", "RateLimitError", "ToolError", "KeyError")
_ERROR_WEIGHTS = (0.4, 0.25, 0.25, 0.1)
_NON_SUCCESS = ("partial", "timeout", "failure")
_NON_SUCCESS_WEIGHTS = (0.35, 0.2, 0.45)
_TIMEOUT_BUDGET_MS = 30_000.0
_UNIT_EVENTS = 200_000  # events per generation unit (bounds memory; part of the seeded stream layout)


def _today_utc() -> date:
    return datetime.now(UTC).date()


def _as_date(value: date | str | None) -> date:
    if value is None:
        return _today_utc()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


@dataclass
class SimulationConfig:
    """What to simulate. Days end at `end_date` (UTC, default today); day index 0 is the first day."""

    days: int = 7
    events_per_day: int = 1_000
    seed: int = 0
    end_date: date | str | None = None
    agents: tuple[str, ...] = DEFAULT_AGENTS
    task_types: tuple[str, ...] = DEFAULT_TASK_TYPES
    complexities: tuple[str, ...] = COMPLEXITIES
    domains: tuple[str, ...] = DOMAINS
    complexity_weights: tuple[float, ...] = (0.3, 0.45, 0.25)
    domain_weights: tuple[float, ...] = (0.25, 0.2, 0.15, 0.4)
    task_weights: tuple[float, ...] | None = None  # default: uniform
    # Logging policy: with propensities a router picks the agent and records its probability.
    propensities: bool = False
    logging_policy: str = "epsilon_greedy"  # or "softmax"
    logging_epsilon: float = 0.3
    logging_temperature: float = 0.5
    malformed_share: float = 0.0  # extra bad records, as a share of the valid events
    oversized_records: int = 1  # of the bad records, how many are > 1 MiB (only if malformed_share > 0)
    duplicate_share: float = 0.0  # extra re-delivered copies, as a share of the valid events
    switch_day: int | None = None  # from this day index on, the best agent of `switch_task_types` changes
    switch_task_types: tuple[str, ...] | None = None  # default: every other task type
    pii_share: float = 0.05  # share of input/output texts carrying an email address or phone number
    file_events: int = 100_000  # max lines per landing file
    truth_seed: int = 7  # the ground truth is drawn from this seed (independent of the event stream)
    best_success: float = 0.82  # success probability of the best agent in an average context
    other_success: tuple[float, float] = (0.3, 0.6)  # range for the other agents

    def __post_init__(self) -> None:
        self.end_date = _as_date(self.end_date)
        self.agents = tuple(self.agents)
        self.task_types = tuple(self.task_types)
        if self.days < 1 or self.events_per_day < 0:
            raise ValueError("days must be >= 1 and events_per_day >= 0")
        if self.end_date > _today_utc():
            raise ValueError(f"end_date {self.end_date} is in the future")
        if len(self.agents) < 2 or len(set(self.agents)) != len(self.agents):
            raise ValueError("need at least two distinct agents")
        if not self.task_types or len(set(self.task_types)) != len(self.task_types):
            raise ValueError("need distinct task types")
        if len(self.complexity_weights) != len(self.complexities):
            raise ValueError("complexity_weights must match complexities")
        if len(self.domain_weights) != len(self.domains):
            raise ValueError("domain_weights must match domains")
        if self.task_weights is not None and len(self.task_weights) != len(self.task_types):
            raise ValueError("task_weights must match task_types")
        for name in ("malformed_share", "duplicate_share", "pii_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.logging_policy not in ("epsilon_greedy", "softmax"):
            raise ValueError("logging_policy must be 'epsilon_greedy' or 'softmax'")
        if not 0 < self.logging_epsilon <= 1:
            raise ValueError("logging_epsilon must be within (0, 1] so every agent has a chance")
        if self.file_events < 1:
            raise ValueError("file_events must be >= 1")
        if self.switch_task_types is not None:
            unknown = set(self.switch_task_types) - set(self.task_types)
            if unknown:
                raise ValueError(f"unknown switch task types: {sorted(unknown)}")

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.days - 1)

    def day_date(self, day: int) -> date:
        return self.start_date + timedelta(days=day)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["end_date"] = self.end_date.isoformat()
        return out


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

        # Context effects: harder tasks succeed less; small agent-specific slopes and domain affinities.
        c_pos = np.linspace(-1.0, 1.0, n_c) if n_c > 1 else np.zeros(1)
        complexity_effect = -0.55 * c_pos[None, :] + rng.normal(0, 0.12, size=(n_a, 1)) * c_pos[None, :]
        domain_effect = rng.normal(0, 0.15, size=(n_a, n_d))
        if "general" in cfg.domains:
            domain_effect[:, cfg.domains.index("general")] = 0.0

        def probs(base_logits: np.ndarray) -> np.ndarray:  # (A, T, C, D)
            x = (
                base_logits[:, :, None, None]
                + complexity_effect[:, None, :, None]
                + domain_effect[:, None, None, :]
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
            index = (_as_date(day) - cfg.start_date).days
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
            "values": {
                "oracle": self.oracle_value(),
                "logging_policy": self.logging_policy_value(),
            },
        }


def simulation_truth(config: SimulationConfig) -> SimulationTruth:
    return SimulationTruth(config)


def true_success_probabilities(config: SimulationConfig, day: int | date | str | None = None) -> pd.DataFrame:
    """DataFrame of true success probabilities per (task_type, complexity, domain, agent_name)."""
    return SimulationTruth(config).success_probabilities(day)


def true_best_agents(config: SimulationConfig) -> pd.DataFrame:
    """The true best agent per (event_date, task_type), respecting switch_day."""
    return SimulationTruth(config).best_agents_by_day()


def true_policy_value(policy, config: SimulationConfig, day: int | date | str | None = None) -> float:
    """True expected success rate of `policy` (callable, mapping or DataFrame; see policy_matrix)."""
    return SimulationTruth(config).policy_value(policy, day)


def load_truth(data_dir: str | Path) -> dict:
    """The truth saved by `write_simulation` under <data_dir>/simulation/truth.json."""
    return json.loads((LakePaths.at(data_dir).root / "simulation" / "truth.json").read_text())


# ---------------------------------------------------------------------------------------------
# Event generation
# ---------------------------------------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _uuid4_array(rng: np.random.Generator, n: int) -> pa.StringArray:
    """n random (seeded) UUID4 strings, built as bytes without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in (
        (slice(0, 8), slice(0, 8)),
        (slice(8, 12), slice(9, 13)),
        (slice(12, 16), slice(14, 18)),
        (slice(16, 20), slice(19, 23)),
        (slice(20, 32), slice(24, 36)),
    ):
        out[:, dst] = hexed[:, src]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _decode(codes: np.ndarray, names) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(list(names), pa.string())
    ).cast(pa.string())


@dataclass(frozen=True)
class _Unit:
    day: int
    part: int
    parts: int
    n: int


def _units(cfg: SimulationConfig) -> list[_Unit]:
    units = []
    for day in range(cfg.days):
        parts = max(1, math.ceil(cfg.events_per_day / _UNIT_EVENTS))
        for part in range(parts):
            lo = cfg.events_per_day * part // parts
            hi = cfg.events_per_day * (part + 1) // parts
            units.append(_Unit(day, part, parts, hi - lo))
    return units


def _base_columns(cfg: SimulationConfig, truth: SimulationTruth, unit: _Unit, rng, now_us: int) -> pa.Table:
    """Draw one unit of events as raw columns (codes, numbers); strings are composed in SQL."""
    n = unit.n
    n_a = len(cfg.agents)
    day_start = datetime.combine(cfg.day_date(unit.day), datetime.min.time(), tzinfo=UTC)
    day_start_us = int(day_start.timestamp() * 1_000_000)
    span = min(86_400_000_000, max(1, now_us - day_start_us))
    lo = day_start_us + span * unit.part // unit.parts
    hi = day_start_us + span * (unit.part + 1) // unit.parts
    ts = np.sort(rng.integers(lo, max(hi, lo + 1), size=n))

    task = rng.choice(len(cfg.task_types), size=n, p=truth.task_probs)
    cx = rng.choice(len(cfg.complexities), size=n, p=truth.complexity_probs)
    dom = rng.choice(len(cfg.domains), size=n, p=truth.domain_probs)
    if cfg.propensities:
        cum = np.cumsum(truth.logging_policy, axis=1)[task]
        agent = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), n_a - 1)
        propensity = truth.logging_policy[task, agent]
    else:
        agent = rng.integers(0, n_a, size=n)
        propensity = np.full(n, np.nan)
    p_success = truth.success[truth.regime(unit.day)][agent, task, cx, dom]
    u = rng.random(n)
    other = rng.choice(3, size=n, p=_NON_SUCCESS_WEIGHTS)
    status = np.where(u < p_success, 0, other + 1)  # 0 success, 1 partial, 2 timeout, 3 failure

    # Latencies: agent speed x complexity, lognormal; timeouts hit the budget.
    agent_median = 350.0 * (1.0 + (np.arange(n_a) * 0.618) % 1.0 * 4.0)  # deterministic per agent, 350..1750
    cx_mult = np.linspace(0.7, 1.8, len(cfg.complexities))
    llm = agent_median[agent] * cx_mult[cx] * rng.lognormal(0.0, 0.45, size=n)
    overhead = rng.lognormal(math.log(40.0), 0.5, size=n)
    timeout = status == 2
    llm = np.where(timeout, _TIMEOUT_BUDGET_MS * rng.uniform(0.9, 1.0, size=n), llm)
    latency = llm + overhead
    duration = latency + rng.lognormal(math.log(5.0), 0.6, size=n)
    llm, latency, duration = (np.round(x, 1) for x in (llm, latency, duration))
    latency = np.maximum(latency, llm + 0.1)
    duration = np.maximum(duration, latency)

    tokens = np.maximum(
        1,
        np.round(
            np.geomspace(300, 2000, len(cfg.complexities))[cx]
            * (0.8 + 0.1 * agent)
            * rng.lognormal(0, 0.4, size=n)
        ),
    ).astype(np.int64)
    model = agent % len(_MODELS)
    price = np.array([m[2] for m in _MODELS])[model]
    cost = np.round(tokens / 1000.0 * price, 6)
    quality = np.select(
        [status == 0, status == 1], [rng.beta(8, 2, size=n), rng.beta(4, 4, size=n)], rng.beta(1, 8, size=n)
    )
    quality = np.round(quality, 3)
    error = rng.choice(len(_ERRORS), size=n, p=_ERROR_WEIGHTS)
    critical = rng.random(n) < 0.05
    severity = np.select([status == 0, status == 1, status == 2, critical], [0, 1, 1, 3], 2)
    retry = np.where(status >= 2, rng.poisson(0.7, size=n), 0)
    pii = np.where(rng.random(n) < cfg.pii_share, rng.integers(1, 3, size=n), 0)  # 1 email, 2 phone

    start_us = ts - np.round(duration * 1000).astype(np.int64)
    return pa.table(
        {
            "row_idx": pa.array(np.arange(n, dtype=np.int64)),
            "event_id": _uuid4_array(rng, n),
            "run_id": _uuid4_array(rng, n),
            "agent_name": _decode(agent, cfg.agents),
            "agent_type": _decode(np.arange(n_a)[agent] % len(_AGENT_TYPES), _AGENT_TYPES),
            "task_type": _decode(task, cfg.task_types),
            "verb": _decode(task % len(_VERBS), _VERBS),
            "noun": _decode((task * 5 + dom) % len(_NOUNS), _NOUNS),
            "complexity": _decode(cx, cfg.complexities),
            "domain": _decode(dom, cfg.domains),
            "ts": pa.array(ts.astype("datetime64[us]")),
            "start_ts": pa.array(start_us.astype("datetime64[us]")),
            "duration_ms": duration,
            "latency_ms": latency,
            "llm_latency_ms": llm,
            "status": _decode(status, ("success",) + _NON_SUCCESS),
            "severity": _decode(severity, ("info", "warning", "error", "critical")),
            "tokens_used": tokens,
            "cost_usd": cost,
            "quality_score": quality,
            "error_type": _decode(np.where(timeout, 4, error), _ERRORS + ("TimeoutError",)),
            "retry_count": retry.astype(np.int64),
            "model": _decode(model, [m[0] for m in _MODELS]),
            "provider": _decode(model, [m[1] for m in _MODELS]),
            "selection_propensity": pa.array(propensity, from_pandas=True),
            "client_id": rng.integers(1000, 99999, size=n),
            "workflow_no": rng.integers(1, 5000, size=n),
            "line_no": rng.integers(20, 400, size=n),
            "pii": pii.astype(np.int8),
        }
    )


def _typed_sql(cfg: SimulationConfig, source: str = "base") -> str:
    """SQL turning the raw unit columns into typed event columns (JSON-valued fields as JSON text)."""
    agents = ", ".join("'" + a.replace("'", "''") + "'" for a in cfg.agents)
    candidates = f"[{agents}]" if cfg.propensities else "NULL::VARCHAR[]"
    propensity = "round(selection_propensity, 6)" if cfg.propensities else "NULL::DOUBLE"
    ok = "status IN ('success', 'partial')"
    pii = (
        "CASE pii WHEN 1 THEN printf(' Contact: %s.%d@example.com', lower(agent_type), client_id) "
        "WHEN 2 THEN printf(' Call +1-555-%04d.', client_id % 10000) ELSE '' END"
    )
    message = (
        "CASE error_type "
        "WHEN 'ValueError' THEN printf('Invalid data format in field ''%s''', noun) "
        "WHEN 'RateLimitError' THEN printf('Rate limit exceeded for %s, retry after %d s', provider, line_no % 60) "
        "WHEN 'ToolError' THEN printf('Tool ''%s_lookup'' returned HTTP %d', noun, 500 + line_no % 4) "
        "WHEN 'KeyError' THEN printf('Missing key ''%s_id'' in tool response', noun) "
        "ELSE printf('Agent exceeded time budget of %d ms', 30000) END"
    )
    return f"""
    SELECT
      row_idx,
      event_id,
      run_id,
      agent_name,
      agent_type,
      printf('%s_%s', verb, noun) AS action_type,
      task_type,
      ts AS "timestamp",
      start_ts AS start_time,
      ts AS end_time,
      duration_ms,
      latency_ms,
      status,
      severity,
      llm_latency_ms,
      tokens_used,
      cost_usd,
      quality_score,
      to_json(struct_pack(
        task := printf('%s the %s %s for client %d.', verb, domain, noun, client_id) || {pii},
        task_type := task_type
      ))::VARCHAR AS input,
      CASE WHEN {ok} THEN to_json(struct_pack(
        result := printf('%s %s: %s', CASE status WHEN 'success' THEN 'Completed' ELSE 'Partially completed' END,
                         verb, noun) || CASE WHEN pii = 1 THEN {pii} ELSE '' END,
        confidence := quality_score
      ))::VARCHAR END AS output,
      CASE WHEN NOT {ok} THEN {message} END AS error_message,
      CASE WHEN NOT {ok} THEN error_type END AS error_type,
      CASE WHEN NOT {ok} THEN printf(
        'Traceback (most recent call last):%s  File "agents/%s.py", line %d, in execute%s%s: %s', chr(10),
        agent_name, line_no, chr(10), error_type, {message}) END AS stack_trace,
      CASE WHEN NOT {ok} THEN retry_count END AS retry_count,
      printf('workflow-%d', workflow_no) AS correlation_id,
      replace(task_type, '_', '-') || '-' || domain AS workflow_id,
      list_value(task_type, domain, complexity) AS tags,
      to_json(struct_pack(complexity := complexity, domain := domain))::VARCHAR AS context,
      to_json(struct_pack(model := model, provider := provider))::VARCHAR AS metadata,
      {propensity} AS selection_propensity,
      {candidates} AS candidate_agents,
      NULL::VARCHAR AS decision_id
    FROM {source}
    """


def _events_schema() -> pa.Schema:
    return pa.schema([OUTCOME_EVENT_SCHEMA.field(f.name) for f in EVENT_FIELDS])


_ISO = "'%Y-%m-%dT%H:%M:%S.%gZ'"


def _json_fields(cfg: SimulationConfig, ok: bool, kind: str | None = None) -> list[tuple[str, str]]:
    """(key, SQL expression) of one JSON line shape; `kind` injects one defect (a bad record)."""
    ts_shift = " + INTERVAL 3650 DAY" if kind == "future_timestamp" else ""
    fields: list[tuple[str, str]] = [
        ("event_id", "event_id" if kind is None else f"'{BAD_EVENT_ID_PREFIX}{kind}-' || event_id"),
        ("run_id", "run_id"),
        ("agent_name", "agent_name"),
        ("agent_type", "agent_type"),
        ("action_type", "action_type"),
        ("task_type", "task_type"),
        ("timestamp", f'strftime("timestamp"::TIMESTAMP{ts_shift}, {_ISO})'),
        ("start_time", f"strftime(start_time::TIMESTAMP{ts_shift}, {_ISO})"),
        ("end_time", f"strftime(end_time::TIMESTAMP{ts_shift}, {_ISO})"),
        ("duration_ms", "'fast'" if kind == "wrong_type" else "duration_ms"),
        ("latency_ms", "latency_ms"),
        ("status", "'exploded'" if kind == "unknown_status" else "status"),
        ("severity", "severity"),
        ("llm_latency_ms", "llm_latency_ms"),
        ("tokens_used", "tokens_used"),
        ("cost_usd", "cost_usd"),
        ("quality_score", "round(1.2 + quality_score, 3)" if kind == "out_of_range" else "quality_score"),
        ("input", "input::JSON"),
    ]
    if ok:
        output = (
            f"to_json(struct_pack(result := repeat('x', {OVERSIZED_BYTES})))"
            if kind == OVERSIZED_KIND
            else "output::JSON"
        )
        fields.append(("output", output))
    else:
        fields += [
            ("error_message", "error_message"),
            ("error_type", "error_type"),
            ("stack_trace", "stack_trace"),
            ("retry_count", "retry_count"),
        ]
    fields += [
        ("correlation_id", "correlation_id"),
        ("workflow_id", "workflow_id"),
        ("tags", "tags"),
        ("context", "context::JSON"),
        ("metadata", "metadata::JSON"),
    ]
    if cfg.propensities:
        fields += [("selection_propensity", "selection_propensity"), ("candidate_agents", "candidate_agents")]
    if kind == "missing_required_field":
        fields = [f for f in fields if f[0] != "agent_name"]
    return fields


def _struct_json(cfg: SimulationConfig, ok: bool, kind: str | None) -> str:
    body = ", ".join(f'"{key}" := {expr}' for key, expr in _json_fields(cfg, ok, kind))
    return f"to_json(struct_pack({body}))"


def _lines_sql(cfg: SimulationConfig, source: str, kind: str | None = None) -> str:
    """One JSON line per raw row of `source`, in row order; `kind` injects one defect into every line."""
    if kind == OVERSIZED_KIND:  # the oversized payload sits in `output`: the ok shape for every row
        line = _struct_json(cfg, True, kind)
    else:
        line = (
            f"CASE WHEN status IN ('success', 'partial') THEN {_struct_json(cfg, True, kind)} "
            f"ELSE {_struct_json(cfg, False, kind)} END"
        )
    if kind == "malformed_json":
        line = f"left({line}, length({line}) // 2)"
    return f"WITH typed AS ({_typed_sql(cfg, source)}) SELECT row_idx, {line} || chr(10) AS line FROM typed"


def _ordered_lines(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Array:
    table = con.sql(sql).to_arrow_table()
    idx = table.column("row_idx").to_numpy()
    lines = table.column("line").combine_chunks()
    if len(idx) and not (np.diff(idx) > 0).all():
        lines = lines.take(pa.array(np.argsort(idx, kind="stable"), pa.int64()))
    return lines


@dataclass
class _UnitOutput:
    n: int  # valid, unique events
    typed: pa.Table | None  # the valid events, typed (only when asked for)
    lines: pa.Array  # all JSONL lines in delivery order (valid, duplicates, bad records)
    duplicates: int
    bad: dict[str, int]


def _generate_unit(
    con: duckdb.DuckDBPyConnection,
    cfg: SimulationConfig,
    truth: SimulationTruth,
    unit: _Unit,
    now_us: int,
    with_lines: bool,
    first_unit: bool,
) -> _UnitOutput:
    rng = np.random.default_rng([cfg.seed, unit.day, unit.part])
    base = _base_columns(cfg, truth, unit, rng, now_us)
    n = unit.n
    if not with_lines or n == 0:
        con.register("base", base)
        typed = con.sql(_typed_sql(cfg) + " ORDER BY row_idx").to_arrow_table()
        con.unregister("base")
        return _UnitOutput(
            n, typed.drop_columns(["row_idx"]).cast(_events_schema()), pa.array([], pa.string()), 0, {}
        )

    con.register("base", base)
    good_lines = _ordered_lines(con, _lines_sql(cfg, "base"))
    con.unregister("base")

    # Re-deliveries: verbatim copies a little later in the stream.
    n_dup = min(int(round(cfg.duplicate_share * n)), n)
    dup_src = np.sort(rng.choice(n, size=n_dup, replace=False)) if n_dup else np.zeros(0, np.int64)
    dup_lines = good_lines.take(pa.array(dup_src, pa.int64()))
    dup_pos = dup_src + rng.uniform(1.0, 200.0, size=len(dup_src))

    # Bad records: each carries exactly one defect of a known kind.
    n_bad = int(round(cfg.malformed_share * n))
    kinds: list[str] = []
    if n_bad:
        n_over = min(cfg.oversized_records, n_bad) if first_unit else 0
        start = int(rng.integers(len(BAD_RECORD_KINDS)))
        kinds = [OVERSIZED_KIND] * n_over + [
            BAD_RECORD_KINDS[(start + i) % len(BAD_RECORD_KINDS)] for i in range(n_bad - n_over)
        ]
    bad_arrays, bad_counts = [], {}
    if kinds:
        src = rng.choice(n, size=len(kinds), replace=len(kinds) > n)
        kind_arr = np.array(kinds)
        for kind in dict.fromkeys(kinds):
            rows = src[kind_arr == kind]
            sub = base.take(pa.array(rows, pa.int64())).set_column(
                0, "row_idx", pa.array(np.arange(len(rows)), pa.int64())
            )
            con.register("bad_src", sub)
            bad_arrays.append(_ordered_lines(con, _lines_sql(cfg, "bad_src", kind)))
            con.unregister("bad_src")
            bad_counts[kind] = len(rows)
    bad_lines = pa.concat_arrays(bad_arrays) if bad_arrays else pa.array([], pa.string())
    bad_pos = rng.uniform(0.0, n, size=len(bad_lines))

    all_lines = pa.concat_arrays([good_lines, dup_lines, bad_lines])
    positions = np.concatenate([np.arange(n, dtype=float), dup_pos, bad_pos])
    order = np.argsort(positions, kind="stable")
    return _UnitOutput(n, None, all_lines.take(pa.array(order, pa.int64())), len(dup_src), bad_counts)


def _iter_units(cfg: SimulationConfig, with_lines: bool) -> Iterator[_UnitOutput]:
    truth = SimulationTruth(cfg)
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        for i, unit in enumerate(_units(cfg)):
            yield _generate_unit(con, cfg, truth, unit, now_us, with_lines, first_unit=(i == 0))
    finally:
        con.close()


def generate_table(config: SimulationConfig, lineage: bool = False) -> pa.Table:
    """All valid, unique events of `config` as one Arrow table with the event columns of OUTCOME_EVENT_SCHEMA.

    With `lineage=True` the pipeline's lineage columns are added (source_file='simulated', record_number,
    received_at = the event time), so the table can be written directly as lake Parquet fixtures.
    """
    tables = [u.typed for u in _iter_units(config, with_lines=False)]
    table = pa.concat_tables(tables) if tables else _events_schema().empty_table()
    if lineage:
        n = table.num_rows
        for f in LINEAGE_FIELDS:
            if f.name == "source_file":
                col = pa.array(["simulated"] * n, pa.string())
            elif f.name == "record_number":
                col = pa.array(np.arange(n, dtype=np.int64))
            else:
                col = table.column("timestamp")
            table = table.append_column(f, col)
    return table


def _line_bytes(arr: pa.Array) -> memoryview:
    """The UTF-8 bytes of a string array's values, concatenated (zero-copy)."""
    if len(arr) == 0:
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)
    start, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return memoryview(arr.buffers()[2])[start:end]


@dataclass
class SimulationResult:
    files: list[Path] = field(default_factory=list)
    events: int = 0  # valid, unique events
    duplicates: int = 0  # extra re-delivered copies
    bad_records: dict[str, int] = field(default_factory=dict)  # kind -> count
    lines: int = 0  # all JSONL lines written
    bytes: int = 0
    truth_path: Path | None = None

    @property
    def bad_total(self) -> int:
        return sum(self.bad_records.values())

    def summary(self) -> dict:
        return {
            "files": len(self.files),
            "events": self.events,
            "duplicates": self.duplicates,
            "bad_records": self.bad_total,
            "bad_by_kind": dict(sorted(self.bad_records.items())),
            "lines": self.lines,
            "bytes": self.bytes,
            "truth_path": str(self.truth_path) if self.truth_path else None,
        }


def iter_event_lines(config: SimulationConfig) -> Iterator[tuple[pa.StringArray, _UnitOutput]]:
    """Yield the JSONL lines (each ending in a newline) of each generation unit, in delivery order."""
    for out in _iter_units(config, with_lines=True):
        yield out.lines, out


def write_simulation(
    config: SimulationConfig, data_dir: str | Path, prefix: str = "sim", write_truth: bool = True
) -> SimulationResult:
    """Write the simulated stream into the landing zone as JSONL files of at most `config.file_events` lines.

    Every file is published atomically. The truth goes to <data_dir>/simulation/truth.json.
    """
    paths = LakePaths.at(data_dir)
    paths.landing.mkdir(parents=True, exist_ok=True)
    result = SimulationResult()
    pending: list[pa.Array] = []
    pending_n = 0

    def flush(limit: int) -> None:
        nonlocal pending, pending_n
        take, rest, taken = [], [], 0
        for arr in pending:
            room = limit - taken
            if room <= 0:
                rest.append(arr)
            elif len(arr) <= room:
                take.append(arr)
                taken += len(arr)
            else:
                take.append(arr.slice(0, room))
                rest.append(arr.slice(room))
                taken += room
        data = b"".join(_line_bytes(a) for a in take)
        path = write_bytes_atomic(paths.landing / new_batch_name(prefix, "jsonl"), data)
        result.files.append(path)
        result.bytes += len(data)
        pending, pending_n = rest, pending_n - taken

    for lines, out in iter_event_lines(config):
        result.events += out.n
        result.duplicates += out.duplicates
        for kind, count in out.bad.items():
            result.bad_records[kind] = result.bad_records.get(kind, 0) + count
        result.lines += len(lines)
        if len(lines):
            pending.append(lines)
            pending_n += len(lines)
        while pending_n >= config.file_events:
            flush(config.file_events)
    if pending_n:
        flush(pending_n)

    if write_truth:
        truth_path = paths.root / "simulation" / "truth.json"
        payload = json.dumps(SimulationTruth(config).to_dict(), indent=1, default=str).encode()
        result.truth_path = write_bytes_atomic(truth_path, payload)
    return result
