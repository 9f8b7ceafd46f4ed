"""Close the loop from an agent's code: ask for a decision, act, record the outcome with its decision_id.

    from learning_pipeline.client import LoopClient

    client = LoopClient(url="http://127.0.0.1:8000", token="...")        # or LoopClient(service=..., recorder=...)
    with client.action("code_review", {"complexity": "high"}) as action:
        result = run_agent(action.agent, task)                           # the agent the policy chose
        action.quality, action.cost_usd = score(result), result.cost
    # on exit the outcome is recorded: status success (failure with error type and stack trace if the block
    # raised, timeout for TimeoutError), latency, quality, cost, and the decision_id that joins it to the
    # decision and its propensity.

The decision comes from the decision service (HTTP `POST /api/learning/predict/agent-selection`, or a
`DecisionService` in process); the outcome goes to the HTTP API (`POST /api/learning/outcomes`) or to an
`OutcomeRecorder` (landing zone or Kafka). A failure to record never hides the agent's own exception.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "/api/learning"


@dataclass
class Action:
    """What the agent did with one decision; fill in quality, cost, tokens and output inside the block."""

    decision: dict
    task_type: str
    context: dict
    agent: str
    quality: float | None = None
    cost_usd: float | None = None
    tokens_used: int | None = None
    output: Any = None
    metadata: dict = field(default_factory=dict)
    status: str | None = None  # set to override the status inferred from the block

    @property
    def decision_id(self) -> str:
        return self.decision["decision_id"]


class LoopClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        service=None,
        recorder=None,
        timeout: float = 5.0,
    ):
        if (url is None) == (service is None):
            raise ValueError("give either url (the HTTP API) or service (a DecisionService in process)")
        self.url = url.rstrip("/") if url else None
        self.token = token
        self.service = service
        self.recorder = recorder
        self.timeout = timeout

    # ---- transport -------------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["X-API-Token"] = self.token
        request = urllib.request.Request(
            f"{self.url}{PREFIX}{path}", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def decide(
        self,
        task_type: str,
        context: Mapping[str, Any] | None = None,
        candidate_agents: Sequence[str] | None = None,
        top_k: int = 3,
    ) -> dict:
        """The decision service's answer: decision_id, model_version, stage and ranked agents with propensities."""
        if self.service is not None:
            return self.service.decide(task_type, context, top_k, candidate_agents)
        body = {"task_type": task_type, "context": dict(context or {}), "top_k": top_k}
        if candidate_agents:
            body["candidate_agents"] = list(candidate_agents)
        return self._post("/predict/agent-selection", body)

    def record(self, event: dict) -> None:
        """One outcome event (it should carry the decision_id)."""
        if self.recorder is not None:
            self.recorder.record(event)
        elif self.url is not None:
            self._post("/outcomes", {"events": [event]})
        else:
            raise ValueError("no recorder and no url: nowhere to record the outcome")
        if self.service is not None:
            self.service.observe([event])  # a version that learns online sees it from its next epoch

    # ---- tracking --------------------------------------------------------------------------------
    @contextmanager
    def action(
        self,
        task_type: str,
        context: Mapping[str, Any] | None = None,
        candidate_agents: Sequence[str] | None = None,
        top_k: int = 1,
    ) -> Iterator[Action]:
        decision = self.decide(task_type, context, candidate_agents, top_k)
        action = Action(
            decision, task_type, dict(context or {}), decision["recommendations"][0]["agent_name"]
        )
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield action
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._record_action(action, (time.perf_counter() - started) * 1000, error)

    def track(self, task_type: str, context: Mapping[str, Any] | None = None) -> Callable:
        """Decorator: the function gets `agent=` (the chosen agent) and its call is recorded as the outcome.
        A returned mapping may carry quality, cost_usd, tokens_used."""

        def wrap(fn: Callable) -> Callable:
            @functools.wraps(fn)
            def inner(*args, **kwargs):
                with self.action(task_type, context) as action:
                    result = fn(*args, agent=action.agent, **kwargs)
                    if isinstance(result, Mapping):
                        action.quality = result.get("quality", action.quality)
                        action.cost_usd = result.get("cost_usd", action.cost_usd)
                        action.tokens_used = result.get("tokens_used", action.tokens_used)
                    return result

            return inner

        return wrap

    def _record_action(self, action: Action, latency_ms: float, error: BaseException | None) -> None:
        if action.status is not None:
            status = action.status
        elif error is None:
            status = "success"
        else:
            status = "timeout" if isinstance(error, TimeoutError) else "failure"
        event = {
            "agent_name": action.agent,
            "task_type": action.task_type,
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "context": action.context,
            "decision_id": action.decision_id,
            "quality_score": action.quality,
            "cost_usd": action.cost_usd,
            "tokens_used": action.tokens_used,
            "output": action.output,
            "metadata": {
                **action.metadata,
                "model_version": action.decision.get("model_version"),
                "stage": action.decision.get("stage"),
            },
        }
        if error is not None:
            event.update(
                error_type=type(error).__name__,
                error_message=str(error)[:2000],
                stack_trace="".join(traceback.format_exception(error))[-8000:],
                severity="error",
            )
        event = {k: v for k, v in event.items() if v is not None}
        try:
            self.record(event)
        except Exception as exc:  # never replaces the agent's own outcome or exception
            log.warning("could not record the outcome of decision %s: %s", action.decision_id, exc)
