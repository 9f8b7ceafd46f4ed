"""The Learning API (FastAPI): HTTP wiring over `learning_pipeline.service.learning`.

Run it with `learning-pipeline serve --data-dir DATA` (uvicorn). OpenAPI schema at /openapi.json, docs at /docs.

One router per concern (learning, status, alerts, graduation), each built from the shared `Service`; a new
concern adds a `*_router(service)` function to `ROUTERS`. State-changing endpoints depend on
`security.require_token` (app creation fails otherwise, see `security.check_writes_need_token`); bodies over
the limit are refused with 413 by `security.BodySizeLimit`; URIs shown are redacted (`lib.redact`).
"""

from __future__ import annotations

import copy
import html
import logging
import math
import os
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, field_validator

from learning_pipeline.lib.autonomy.alerts import (
    ALERT_TYPES,
    WEBHOOK_ENV,
    Alert,
    AlertStore,
    raise_and_notify,
)
from learning_pipeline.lib.events.decisions import DecisionLogger
from learning_pipeline.lib.learning.registry import default_tracking_uri
from learning_pipeline.lib.redact import install_log_redaction, redact_text, redact_uri, redact_values
from learning_pipeline.lib.storage.lake import LakePaths, land_records
from learning_pipeline.service import learning as api
from learning_pipeline.service import security
from learning_pipeline.service.control import control_router
from learning_pipeline.service.decisions import DecisionService, NoAgents
from learning_pipeline.service.security import READ_ONLY, TOKEN_ENV, require_token

log = logging.getLogger(__name__)

PREFIX = "/api/learning"
MAX_CONTEXT_KEYS = 50
MAX_CONTEXT_KEY_CHARS = 64
MAX_CONTEXT_VALUE_CHARS = 256
MAX_CANDIDATES = 100
MAX_OUTCOMES = 10_000
ContextValue = str | int | float | bool | None
WRITE = [Depends(require_token)]  # the dependencies of every state-changing endpoint


# ---- bodies and answers ---------------------------------------------------------------------------


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class AgentSelectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(
        ..., min_length=1, max_length=200, description="task type; unknown ones get a cold start"
    )
    context: dict[str, ContextValue] = Field(
        default_factory=dict,
        description=f"context fields, e.g. complexity: at most {MAX_CONTEXT_KEYS} keys of at most "
        f"{MAX_CONTEXT_KEY_CHARS} characters; text values of at most {MAX_CONTEXT_VALUE_CHARS} characters",
        json_schema_extra={
            "maxProperties": MAX_CONTEXT_KEYS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_CONTEXT_KEY_CHARS},
        },
    )
    top_k: int = Field(3, ge=1, le=100, description="number of agents to return")
    candidate_agents: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None,
        max_length=MAX_CANDIDATES,
        description="the agents this request may be routed to (default: those with evidence for the task type)",
    )

    @field_validator("context")
    @classmethod
    def _bounded(cls, context: dict[str, ContextValue]) -> dict[str, ContextValue]:
        if len(context) > MAX_CONTEXT_KEYS:
            raise ValueError(f"at most {MAX_CONTEXT_KEYS} keys, got {len(context)}")
        for key, value in context.items():
            if not 1 <= len(key) <= MAX_CONTEXT_KEY_CHARS:
                raise ValueError(
                    f"key {_short(key)!r} has {len(key)} characters; keys have 1 to {MAX_CONTEXT_KEY_CHARS}"
                )
            if isinstance(value, str) and len(value) > MAX_CONTEXT_VALUE_CHARS:
                raise ValueError(
                    f"context.{key} has {len(value)} characters; text values have at most "
                    f"{MAX_CONTEXT_VALUE_CHARS}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"context.{key} must be a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
                raise ValueError(f"context.{key} is out of the 64-bit integer range")
        return context


class Recommendation(BaseModel):
    agent_name: str
    score: float | None = Field(description="the serving version's predicted success for this agent")
    rank: int
    selection_propensity: float = Field(
        gt=0, le=1, description="probability that the policy selects this agent first for this request"
    )


class AgentSelectionResponse(BaseModel):
    decision_id: str = Field(description="record it with the outcome (`decision_id`) to join the two")
    recommendations: list[Recommendation] = Field(description="rank 1 is the agent drawn for this request")
    model_score: float | None = Field(description="predicted success of the rank-1 agent")
    model_version: int | None = Field(description="agent-router version that served (None: no live version)")
    stage: Literal["live", "canary", "cold_start"] = Field(description="stage of the serving version")
    cold_start: bool = Field(description="the task type has no evidence in the serving version")
    timestamp: str


class OutcomesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(
        ...,
        min_length=1,
        max_length=MAX_OUTCOMES,
        description="outcome events (see the README's event schema), each ideally with its decision_id",
    )


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field("api", min_length=1, max_length=200, description="who acknowledges")


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(..., min_length=1, max_length=200, description="who approves")
    reason: str = Field(..., min_length=1, max_length=2000, description="why")


class Error(BaseModel):
    detail: Any


ERRORS = {404: {"model": Error}, 409: {"model": Error}}
WRITE_ERRORS = {401: {"model": Error}, 403: {"model": Error}, **ERRORS}


def _short_loc(loc) -> list:
    return [_short(p, 80) if isinstance(p, str) else p for p in loc]


def _message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)


# ---- the routers, one per concern -------------------------------------------------------------------


@dataclass
class Service:
    """What every router reads: the data directory, the tracking URI, the served model, the alert store."""

    paths: LakePaths
    tracking_uri: str
    dagster_home: str | None
    decisions: DecisionService
    alerts: AlertStore


def learning_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["learning"])
    paths, decisions = service.paths, service.decisions

    @router.get("/metrics")
    def metrics() -> dict[str, Any]:
        """Learning-cycle counts, durations, samples, the champion's score and the mean accepted improvement."""
        return api.learning_metrics(paths)

    @router.get("/agents/performance")
    def agents_performance(
        task_type: Annotated[str | None, Query(max_length=200, description="only this task type")] = None,
        window: Annotated[Literal["1h", "24h", "7d", "all"], Query(description="stats window")] = "all",
    ) -> list[dict[str, Any]]:
        """Per agent: success rate, average latency, total executions (from agent_stats / agent_task_stats)."""
        return api.agent_performance(paths, task_type, window)

    @router.post(
        "/predict/agent-selection",
        response_model=AgentSelectionResponse,
        openapi_extra=READ_ONLY,
        responses={503: {"model": Error}},
    )
    def agent_selection(body: AgentSelectionRequest) -> JSONResponse:
        """One decision from the live version (a share from the canary; shadow versions scored beside it):
        the agents ranked, each with its selection propensity, logged under `decision_id`."""
        try:
            answer = decisions.decide(body.task_type, body.context, body.top_k, body.candidate_agents)
        except NoAgents as error:
            raise HTTPException(503, str(error)) from error
        # built to the response model's shape; returned as is (no second validation pass)
        return JSONResponse(answer)

    @router.post("/outcomes", dependencies=WRITE, responses=WRITE_ERRORS, status_code=202)
    def outcomes(body: OutcomesRequest) -> dict[str, Any]:
        """Land outcome events in the landing zone (validated, quarantined or accepted by the pipeline)."""
        path = land_records(paths.landing, body.events, prefix="http")
        try:  # a version that learns online sees them at its next epoch; landing has already succeeded
            decisions.observe(body.events)
        except Exception as error:
            log.warning("online evidence not updated: %s", error)
        return {"landed": len(body.events), "file": path.name}

    return router


def status_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["learning"])
    decisions = service.decisions

    @router.get("/status")
    def status() -> dict[str, Any]:
        """Service state, models loaded, last learning cycle, sensors and schedules (credentials redacted)."""
        found = api.instigators(service.dagster_home)
        return {
            "status": "running",
            "running": True,
            "data_dir": str(service.paths.root),
            "tracking_uri": redact_uri(service.tracking_uri),
            "state_store": service.alerts.location,
            "models_loaded": [redact_values(v.info()) for v in decisions.roster.values()],
            "decisions": redact_values(decisions.info()),
            "champion_poll_seconds": decisions.poll_seconds,
            "last_poll_at": decisions.last_poll_at,
            "model_error": redact_text(decisions.last_error),
            "last_cycle": api.last_cycle(service.paths),
            "loop": api.loop_cycle(service.paths),
            "sensors": found.sensors,
            "schedules": found.schedules,
            "instigators_error": redact_text(found.error),
            "writes_enabled": security.writes_enabled(),
            "approvals_enabled": security.writes_enabled(),
        }

    return router


def alerts_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    @router.get("/alerts")
    def alerts(
        include_acknowledged: bool = False,
        alert_type: Annotated[Literal[ALERT_TYPES] | None, Query(description="only this alert type")] = None,
    ) -> list[dict[str, Any]]:
        """Alerts, newest first (open ones unless include_acknowledged=true)."""
        return api.list_alerts(service.alerts, include_acknowledged, alert_type)

    @router.post("/alerts/{alert_id}/ack", dependencies=WRITE, responses=WRITE_ERRORS)
    def acknowledge(
        alert_id: Annotated[str, Path(max_length=100)], body: AckRequest | None = None
    ) -> dict[str, Any]:
        """Acknowledge one alert; needs the X-API-Token header (404: unknown id, 409: already acknowledged)."""
        try:
            return api.acknowledge_alert(service.alerts, alert_id, (body or AckRequest()).by)
        except api.NotFound as error:
            raise HTTPException(404, str(error)) from error
        except api.Conflict as error:
            raise HTTPException(409, str(error)) from error

    return router


def graduation_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["graduation"])
    paths, uri = service.paths, service.tracking_uri

    @router.get("/graduation")
    def graduation() -> dict[str, Any]:
        """Every version's gate, approval and stage; versions in shadow or canary are eligible for live."""
        return redact_values(api.graduation_status(paths, uri))

    @router.post("/graduation/{version}/approve", dependencies=WRITE, responses=WRITE_ERRORS)
    def approve(version: Annotated[int, Path(ge=1, le=2**31 - 1)], body: ApproveRequest) -> dict[str, Any]:
        """shadow | canary -> live for one version; needs the X-API-Token header (no token configured: 403,
        unknown version: 404, a version in another stage: 409)."""
        try:
            return redact_values(api.approve_live(paths, uri, version, body.by, body.reason))
        except api.NotFound as error:
            raise HTTPException(404, str(error)) from error
        except api.Conflict as error:
            raise HTTPException(409, redact_text(str(error))) from error

    return router


DAGSTER_UI_URL_ENV = "LEARNING_PIPELINE_DAGSTER_UI_URL"
DEFAULT_DAGSTER_UI = "http://127.0.0.1:3000"  # where `make ui` serves


def index_router(service: Service) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def index() -> str:
        """Links to the API's docs and reads, and to the Dagster and MLflow UIs."""
        from learning_pipeline.defs.summary.links import mlflow_ui_base  # the address asset links use

        dagster_ui = os.environ.get(DAGSTER_UI_URL_ENV, "").strip() or DEFAULT_DAGSTER_UI
        links = [
            ("/docs", "API docs (Swagger UI)"),
            ("/openapi.json", "OpenAPI schema"),
            (f"{PREFIX}/status", "status: served versions, sensors and schedules"),
            (f"{PREFIX}/metrics", "learning metrics"),
            (f"{PREFIX}/graduation", "versions and their stages"),
            (f"{PREFIX}/alerts", "open alerts"),
            (dagster_ui, f"Dagster UI (`make ui`; ${DAGSTER_UI_URL_ENV})"),
            (mlflow_ui_base(service.tracking_uri), "MLflow UI"),
        ]
        items = "\n".join(
            f'<li><a href="{html.escape(url)}">{html.escape(text)}</a></li>' for url, text in links
        )
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>Learning API</title></head><body>"
            f"<h1>learning_pipeline Learning API</h1><ul>\n{items}\n</ul></body></html>"
        )

    return router


ROUTERS: list[Callable[[Service], APIRouter]] = [
    learning_router,
    status_router,
    alerts_router,
    graduation_router,
    control_router,
]


# ---- the app ----------------------------------------------------------------------------------------


def _alert_decision_log_failure(store: AlertStore) -> Callable[[str, int], None]:
    """An ERROR alert (one per hour at most, by its dedup key) when decisions cannot be written."""

    def alert(error: str, pending: int) -> None:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        raise_and_notify(
            store,
            Alert(
                "ERROR",
                "CRITICAL",
                "decisions cannot be written to the decision log",
                f"{pending} decision rows are kept in memory and retried: {redact_text(error)}",
                dedup_key=f"DECISION_LOG:{now:%Y-%m-%dT%H}",
                metric="decisions_pending",
                value=float(pending),
                source="learning-pipeline serve",
            ),
            os.environ.get(WEBHOOK_ENV) or None,
            now=now,
        )

    return alert


def create_app(
    data_dir: str,
    tracking_uri: str | None = None,
    poll_seconds: float = 2.0,
    dagster_home: str | None = None,
    max_body_bytes: int | None = None,
    canary_share: float = 0.1,
) -> FastAPI:
    """The app over `data_dir`. `max_body_bytes`: default `$LEARNING_PIPELINE_API_MAX_BODY_BYTES` or 1 MiB."""
    install_log_redaction()
    limit = security.max_body_bytes(max_body_bytes)
    paths = LakePaths.at(data_dir)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(data_dir)
    alerts = AlertStore(paths)
    service = Service(
        paths=paths,
        tracking_uri=uri,
        dagster_home=dagster_home or os.environ.get("DAGSTER_HOME"),
        decisions=DecisionService(
            paths,
            uri,
            poll_seconds=poll_seconds,
            canary_share=canary_share,
            logger=DecisionLogger(paths, on_failure=_alert_decision_log_failure(alerts)),
        ),
        alerts=alerts,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(
            "Learning API over %s: tracking %s, state %s, request bodies up to %d bytes, writes %s",
            paths.root,
            redact_uri(uri),
            service.alerts.location,
            limit,
            "enabled" if security.writes_enabled() else f"disabled (no ${TOKEN_ENV})",
        )
        service.decisions.start()
        # import the code location once in the background: /status lists its sensors and schedules
        threading.Thread(target=api.instigators, args=(None,), daemon=True).start()
        yield
        service.decisions.stop()  # writes the decisions still buffered

    app = FastAPIOffline(  # /docs from files in the package: no CDN, works without internet
        title="learning_pipeline Learning API",
        version="1.0.0",
        description="Metrics, agent performance, decisions from the live agent-router version (logged with "
        "their propensities), outcomes, status, "
        "alerts and graduation approvals. State-changing endpoints need the X-API-Token header; request "
        f"bodies over {limit} bytes get 413.",
        lifespan=lifespan,
    )
    app.state.decisions = service.decisions
    app.state.service = service
    app.add_middleware(security.BodySizeLimit, max_bytes=limit)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [
            {k: (_short_loc(v) if k == "loc" else v) for k, v in e.items() if k in ("loc", "msg", "type")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors, "message": _message(errors)})

    for make in ROUTERS:
        app.include_router(make(service), prefix=PREFIX)
    app.include_router(index_router(service))
    security.check_writes_need_token(app)
    return app


def log_config(log_level: str) -> dict:
    """uvicorn's logging configuration, with this package's loggers on its default handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["learning_pipeline"] = {
        "handlers": ["default"],
        "level": log_level.upper(),
        "propagate": False,
    }
    return config


def serve(
    data_dir: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    tracking_uri: str | None = None,
    poll_seconds: float = 2.0,
    dagster_home: str | None = None,
    log_level: str = "info",
    max_body_bytes: int | None = None,
    canary_share: float = 0.1,
) -> None:
    import uvicorn

    app = create_app(data_dir, tracking_uri, poll_seconds, dagster_home, max_body_bytes, canary_share)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, access_log=False, log_config=log_config(log_level)
    )
