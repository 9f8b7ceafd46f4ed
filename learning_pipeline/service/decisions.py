"""The decision service: serve exactly the evaluated policy, log every decision with its propensities.

Roster, refreshed from the registry aliases of `agent-router` every `poll_seconds`:
    live    @champion: serves every request (all of them when there is no canary)
    canary  @canary:   serves a `canary_share` of requests; the rest go to live
    shadow  @shadow:   scored on every request with the same decision_id, never served
Without a live version the service falls back to the lake's `agent_posteriors` (stage `cold_start`), and
without those to a uniform choice among the request's candidate agents.

For a request each version computes its selection probabilities with `RoutingPolicy.decide` (the code the
gate evaluated). The served agent is drawn from the serving version; the logged propensities are the
mixture (1 - s) * pi_live + s * pi_canary that produced the draw, so live and canary both stay evaluable
off-policy. Every scored version is logged (served row + one row per other version) through
`DecisionLogger`, off the request path.

A version trained with `online_epoch_seconds` > 0 keeps learning while it serves (`lib/bandit/online.py`):
outcomes posted to the service (`observe`, from POST /outcomes or an in-process `LoopClient`) update its
evidence at the next epoch boundary, exactly as the gate replayed it. Outcomes that reach only the landing
zone or Kafka update the next version, not the one serving; the evidence lives in this process.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from learning_pipeline.lib.bandit import online
from learning_pipeline.lib.bandit.exploration import sample_choice
from learning_pipeline.lib.bandit.policy import RoutingPolicy
from learning_pipeline.lib.events.decisions import DecisionLogger
from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.data import rewards
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.lib.storage.warehouse import lake_connection

log = logging.getLogger(__name__)

LIVE, CANARY, SHADOW, COLD_START = "live", "canary", "shadow", "cold_start"
STAGE_ALIASES = {LIVE: registry.CHAMPION, CANARY: "canary", SHADOW: "shadow"}
CACHE_SIZE = 50_000


class NoAgents(ValueError):
    """Nothing to choose from: no model, no posteriors in the lake and no candidate agents."""


@dataclass(frozen=True)
class ServingVersion:
    stage: str
    version: int | None
    policy: RoutingPolicy
    source: str
    loaded_at: str
    evidence: online.Evidence | None = None  # a version that learns online (see module doc)

    @classmethod
    def of(cls, stage: str, version: int | None, policy: RoutingPolicy, source: str) -> ServingVersion:
        seconds = policy.online_epoch_seconds
        evidence = online.Evidence(*policy.evidence_shape) if seconds > 0 else None
        return cls(stage, version, policy, source, _now().isoformat(), evidence)

    def info(self) -> dict:
        out = {
            "stage": self.stage,
            "version": self.version,
            "source": self.source,
            "model_kind": self.policy.model_kind,
            "exploration": self.policy.exploration,
            "agents": len(self.policy.agents),
            "loaded_at": self.loaded_at,
            "online_epoch_seconds": self.policy.online_epoch_seconds,
        }
        if self.evidence is not None:
            out["online_outcomes_folded"] = self.evidence.folded
        return out


def _now() -> datetime:
    return datetime.now(UTC)


def _clean(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class DecisionService:
    def __init__(
        self,
        paths: LakePaths,
        tracking_uri: str,
        poll_seconds: float = 2.0,
        canary_share: float = 0.1,
        logger: DecisionLogger | None = None,
        seed: int | None = None,
    ):
        if not 0.0 < canary_share < 1.0:
            raise ValueError(f"canary_share must be in (0, 1), got {canary_share}")
        self.paths = paths
        self.tracking_uri = tracking_uri
        self.poll_seconds = float(poll_seconds)
        self.canary_share = float(canary_share)
        self.logger = logger
        self.rng = np.random.default_rng(seed)
        self.roster: dict[str, ServingVersion] = {}
        self.last_poll_at: str | None = None
        self.last_error: str | None = None
        self.log_failures = 0
        self._versions: dict[int, RoutingPolicy] = {}
        self._lake_stamp: tuple | None = None
        self._cache: OrderedDict[tuple, tuple[list[str], np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- roster ---------------------------------------------------------------------------------
    def _alias_versions(self) -> dict[str, int]:
        from mlflow.exceptions import MlflowException

        found = {}
        with registry.tracking(self.tracking_uri) as client:
            for stage, alias in STAGE_ALIASES.items():
                try:
                    found[stage] = int(
                        client.get_model_version_by_alias(registry.REGISTERED_MODEL, alias).version
                    )
                except MlflowException:
                    continue
        return found

    def _policy(self, version: int) -> RoutingPolicy:
        if version not in self._versions:
            self._versions[version] = registry.load_policy(self.tracking_uri, version)
        return self._versions[version]

    def _cold_start(self) -> ServingVersion | None:
        directory = self.paths.table("agent_posteriors")
        stamp = (
            tuple(sorted((str(p), p.stat().st_mtime_ns) for p in directory.rglob("*.parquet")))
            if (directory.exists())
            else ()
        )
        previous = self.roster.get(COLD_START)
        if stamp == self._lake_stamp:
            return previous
        self._lake_stamp = stamp
        if not stamp:
            return None
        with lake_connection(self.paths) as con:
            posteriors = con.execute("SELECT * FROM agent_posteriors").df()
        agents = tuple(sorted(posteriors["agent_name"].astype(str).unique()))
        policy = RoutingPolicy(posteriors, agents)
        return ServingVersion.of(COLD_START, None, policy, "lake:agent_posteriors")

    def refresh(self) -> bool:
        """Read the aliases once and load what changed. Returns True when the roster changed."""
        self.last_poll_at = _now().isoformat()
        try:
            versions = self._alias_versions()
            roster = {}
            for stage, version in versions.items():
                current = self.roster.get(stage)
                if current is not None and current.version == version:
                    roster[stage] = current
                else:
                    source = f"models:/{registry.REGISTERED_MODEL}/{version}"
                    roster[stage] = ServingVersion.of(stage, version, self._policy(version), source)
            if LIVE not in roster:
                cold = self._cold_start()
                if cold is not None:
                    roster[COLD_START] = cold
            changed = {s: v.version for s, v in roster.items()} != {
                s: v.version for s, v in self.roster.items()
            }
            changed |= roster.get(COLD_START) is not self.roster.get(COLD_START)
            if changed:
                with self._lock:
                    self.roster = roster
                    self._cache.clear()
                log.info("serving %s", {s: v.source for s, v in roster.items()})
            self.last_error = None
            return changed
        except Exception as error:  # keep serving the previous roster; /status shows the problem
            self.last_error = f"{type(error).__name__}: {error}"
            log.warning("roster refresh failed: %s", self.last_error)
            return False

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="roster-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.logger is not None:
            self.logger.close()

    # ---- deciding ------------------------------------------------------------------------------
    def _probabilities(
        self,
        served: ServingVersion,
        task_type: str,
        context: Mapping[str, str],
        candidates: tuple[str, ...] | None,
        at: datetime,
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Eligible agents, their selection probabilities and predicted success under one version."""
        policy, evidence = served.policy, served.evidence
        generation = None
        if evidence is not None:
            with self._lock:
                evidence.fold(int(online.epochs([at], policy.online_epoch_seconds)[0]))
                generation = evidence.generation
        key = (
            served.stage,
            served.version,
            task_type,
            tuple(context.get(k) for k in policy.context_keys),
            candidates,
            generation,
        )
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        row = {"task_type": task_type, **{k: context.get(k) for k in policy.context_keys}}
        row["candidate_agents"] = list(candidates) if candidates is not None else None
        frame = pd.DataFrame([row])
        counts = None
        if evidence is not None:
            with self._lock:
                counts = evidence.counts(policy.evidence_rows(frame))
        universe, probs, eligible = policy.decide(frame, counts)
        scores = np.full(len(universe), policy.prior_mean)
        scores[: len(policy.agents)] = policy.beliefs(frame, counts)[0][0]  # with its online evidence
        keep = eligible[0]
        result = ([a for a, k in zip(universe, keep, strict=True) if k], probs[0][keep], scores[keep])
        with self._lock:
            self._cache[key] = result
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    def decide(
        self,
        task_type: str,
        context: Mapping[str, Any] | None = None,
        top_k: int = 3,
        candidate_agents: Sequence[str] | None = None,
        at: datetime | None = None,
    ) -> dict:
        """One decision: the ranked agents with their selection propensities, logged with a decision_id.
        `at`: the decision time (default now; a simulation passes its clock)."""
        roster = self.roster  # one consistent snapshot
        now = at or _now()
        context = {str(k): str(v) for k, v in (context or {}).items() if v is not None}
        candidates = tuple(dict.fromkeys(str(a) for a in candidate_agents)) if candidate_agents else None
        live = roster.get(LIVE) or roster.get(COLD_START)
        canary = roster.get(CANARY)
        scored = {}
        for served in (live, canary, roster.get(SHADOW)):
            if served is not None:
                scored[served.stage] = (
                    served,
                    *self._probabilities(served, task_type, context, candidates, now),
                )
        if live is None:
            if not candidates:
                raise NoAgents("no model is live yet and the request names no candidate_agents")
            agents = list(candidates)
            mixture = dict.fromkeys(agents, 1.0 / len(agents))
            scores = dict.fromkeys(agents, float("nan"))
            serving, stage, version, cold = None, COLD_START, None, True
        else:
            _, live_agents, live_p, live_scores = scored[live.stage]
            serving = live
            mixture = dict(zip(live_agents, live_p, strict=True))
            scores = dict(zip(live_agents, live_scores, strict=True))
            if canary is not None:
                _, c_agents, c_p, c_scores = scored[CANARY]
                share = self.canary_share
                mixture = {a: (1 - share) * p for a, p in mixture.items()}
                for a, p in zip(c_agents, c_p, strict=True):
                    mixture[a] = mixture.get(a, 0.0) + share * p
                if self.rng.random() < share:
                    serving, scores = canary, dict(zip(c_agents, c_scores, strict=True))
            stage, version = serving.stage, serving.version
            cold = task_type not in serving.policy.known_tasks
        # the served agent is drawn from the serving version; its propensity is the mixture's
        if serving is None:
            pool = list(mixture)
            weights = np.array([mixture[a] for a in pool])
        else:
            _, pool, weights, _ = scored[serving.stage]
        chosen = pool[sample_choice(np.asarray(weights), self.rng)]
        agents = list(mixture)
        probabilities = np.array([mixture[a] for a in agents])
        order = [chosen] + [
            agents[i] for i in np.argsort(-probabilities, kind="stable") if agents[i] != chosen
        ]
        ranking = order[: max(1, min(int(top_k), len(order)))]
        decision_id = uuid.uuid4().hex
        rows = [
            self._row(
                decision_id,
                now,
                task_type,
                context,
                agents,
                probabilities,
                chosen,
                ranking,
                version,
                stage,
                True,
            )
        ]
        for name, (other, o_agents, o_p, _) in scored.items():
            if other is not serving and name != COLD_START:
                o_order = [o_agents[i] for i in np.argsort(-o_p, kind="stable")]
                rows.append(
                    self._row(
                        decision_id,
                        now,
                        task_type,
                        context,
                        o_agents,
                        o_p,
                        o_order[0],
                        o_order[: len(ranking)],
                        other.version,
                        other.stage,
                        False,
                    )
                )
        self._log(rows)
        return {
            "decision_id": decision_id,
            "model_version": version,
            "stage": stage,
            "recommendations": [
                {
                    "agent_name": a,
                    "rank": i + 1,
                    "score": _clean(scores.get(a, float("nan"))),
                    "selection_propensity": float(mixture[a]),
                }
                for i, a in enumerate(ranking)
            ],
            "model_score": _clean(scores.get(chosen, float("nan"))),
            "cold_start": cold,
            "timestamp": now.isoformat(),
        }

    def observe(self, outcomes: Sequence[Mapping[str, Any]], at: datetime | None = None) -> int:
        """Give outcome events to the versions that learn online; returns how many they could use.

        An event needs agent_name and status (its reward follows the pipeline's rule); without a timestamp
        it counts as happening `at` (default now). Others are left to the pipeline's validation.
        """
        learners = [v for v in self.roster.values() if v.evidence is not None]
        frame = pd.DataFrame([dict(o) for o in outcomes])
        if not learners or frame.empty or not {"agent_name", "status"} <= set(frame.columns):
            return 0
        frame = frame[frame["agent_name"].notna() & frame["status"].notna()].reset_index(drop=True)
        for column in ("task_type", "timestamp", "context"):
            if column not in frame.columns:
                frame[column] = None
        stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
        frame["timestamp"] = stamps.fillna(pd.Timestamp(at or _now()))
        context = pd.DataFrame.from_records([c if isinstance(c, Mapping) else {} for c in frame["context"]])
        for served in learners:
            policy = served.policy
            rows = frame[["task_type", "agent_name", "timestamp"]].copy()
            # the version's own reward rule and weights: the rule its gate replayed
            rows["reward"] = rewards(
                frame, policy.params.get("reward_rule", "graded"), policy.params.get("reward_weights") or None
            )
            for key in policy.context_keys:
                rows[key] = context[key].astype(object) if key in context.columns else None
            evidence = policy.online_outcomes(rows)  # computed outside the lock
            with self._lock:
                served.evidence.add(*evidence)
        return len(frame)

    @staticmethod
    def _row(
        decision_id, at, task_type, context, agents, probabilities, chosen, ranking, version, stage, served
    ):
        return {
            "decision_id": decision_id,
            "decided_at": at,
            "task_type": task_type,
            "context": json.dumps(context, sort_keys=True),
            "agents": list(agents),
            "probabilities": [float(p) for p in probabilities],
            "chosen_agent": chosen,
            "ranking": list(ranking),
            "model_version": version,
            "stage": stage,
            "served": served,
        }

    def _log(self, rows: list[dict]) -> None:
        if self.logger is None:
            return
        try:
            self.logger.log(rows)
        except Exception as error:  # never fails the request; counted for /status and alerts
            self.log_failures += 1
            log.warning("decision log failed: %s", error)

    def info(self) -> dict:
        logger = self.logger.stats if self.logger is not None else None
        return {
            "roster": [v.info() for v in self.roster.values()],
            "canary_share": self.canary_share,
            "decisions_logged": logger.logged if logger else 0,
            "decision_log_failures": (logger.failed if logger else 0) + self.log_failures,
            "last_poll_at": self.last_poll_at,
            "last_error": self.last_error,
        }
