"""What to simulate: `SimulationConfig`, the default agents, task types and contexts, the kinds of bad records.

Also the two example events of the realtime feedback pipeline's schema, verbatim (`SEED_EXAMPLE_EVENTS`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

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


def _today_utc() -> date:
    return datetime.now(UTC).date()


def as_date(value: date | str | None) -> date:
    if value is None:
        return _today_utc()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _names(value: tuple[str, ...] | int, pattern: str) -> tuple[str, ...]:
    """Names as given, or `pattern` numbered 0..n-1 when a count n is given."""
    if isinstance(value, int):
        return tuple(pattern.format(i) for i in range(value))
    return tuple(value)


@dataclass
class SimulationConfig:
    """What to simulate. Days end at `end_date` (UTC, default today); day index 0 is the first day."""

    days: int = 7
    events_per_day: int = 1_000
    seed: int = 0
    end_date: date | str | None = None
    agents: tuple[str, ...] | int = DEFAULT_AGENTS  # or a number n: agent_00 .. agent_<n-1>
    task_types: tuple[str, ...] | int = DEFAULT_TASK_TYPES  # or a number n: task_000 .. task_<n-1>
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
    switch_task_types: tuple[str, ...] | str | None = None  # default: every other task type; "all"
    pii_share: float = 0.05  # share of input/output texts carrying an email address or phone number
    file_events: int = 100_000  # max lines per landing file
    truth_seed: int = 7  # the ground truth is drawn from this seed (independent of the event stream)
    best_success: float = 0.82  # success probability of the best agent in an average context
    other_success: tuple[float, float] = (0.3, 0.6)  # range for the other agents
    gap: float | None = None  # if set, the best agent's success probability is the runner-up's + gap
    missing_task_type_share: float = 0.0  # events logged without task_type (action_type names the task)
    missing_quality_share: float = 0.0  # events logged without quality_score
    # > 0: the best agent depends on the joint context. Each (complexity, domain) cell has a specialist agent
    # (drawn from truth_seed) whose logit gains this much there: an agent x complexity x domain interaction
    # that neither key alone nor the task type explains. 0: context effects are additive only.
    joint_context_effect: float = 0.0
    # True: agents trade quality against cost and latency. Agents ranked by their mean success probability get
    # mean costs and latency medians spread geometrically over these ranges, the least successful the cheapest
    # and fastest, the most successful the most expensive and slowest (SimulationTruth.agent_cost_usd).
    cost_tradeoff: bool = False
    tradeoff_cost_usd: tuple[float, float] = (0.002, 0.2)  # mean cost of an event, cheapest .. dearest agent
    tradeoff_latency_ms: tuple[float, float] = (300.0, 3000.0)  # latency median, fastest .. slowest agent

    def __post_init__(self) -> None:
        self.end_date = as_date(self.end_date)
        self.agents = _names(self.agents, "agent_{:02d}")
        self.task_types = _names(self.task_types, "task_{:03d}")
        if self.switch_task_types == "all":
            self.switch_task_types = self.task_types
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
        for name in (
            "malformed_share",
            "duplicate_share",
            "pii_share",
            "missing_task_type_share",
            "missing_quality_share",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.logging_policy not in ("epsilon_greedy", "softmax"):
            raise ValueError("logging_policy must be 'epsilon_greedy' or 'softmax'")
        if not 0 < self.logging_epsilon <= 1:
            raise ValueError("logging_epsilon must be within (0, 1] so every agent has a chance")
        if self.file_events < 1:
            raise ValueError("file_events must be >= 1")
        if self.joint_context_effect < 0:
            raise ValueError("joint_context_effect must be >= 0")
        for name in ("tradeoff_cost_usd", "tradeoff_latency_ms"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high")
        if self.gap is not None and not 0 < self.gap < 1:
            raise ValueError("gap must be within (0, 1)")
        if self.switch_task_types is not None:
            if isinstance(self.switch_task_types, str):
                raise ValueError('switch_task_types must be task types or "all"')
            self.switch_task_types = tuple(self.switch_task_types)
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
