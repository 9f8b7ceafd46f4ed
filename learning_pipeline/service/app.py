"""The Learning API (FastAPI): HTTP wiring over `learning_pipeline.service.learning`.

Run it with `learning-pipeline serve --data-dir DATA` (uvicorn). OpenAPI schema at /openapi.json, docs at /docs.
"""

from __future__ import annotations

import os
import threading
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from learning_pipeline.lib.learning.registry import default_tracking_uri
from learning_pipeline.lib.storage.lake import LakePaths
from learning_pipeline.service import learning as api

PREFIX = "/api/learning"
ContextValue = str | int | float | bool | None


# ---- bodies and answers ---------------------------------------------------------------------------


class AgentSelectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(
        ..., min_length=1, max_length=200, description="task type; unknown ones get a cold start"
    )
    context: dict[str, ContextValue] = Field(
        default_factory=dict, description="context fields, e.g. complexity"
    )
    top_k: int = Field(3, ge=1, le=100, description="number of agents to return")
    mode: Literal["thompson", "mean"] = Field(
        "thompson", description="thompson: scores are posterior samples (explores); mean: posterior means"
    )


class Recommendation(BaseModel):
    agent_name: str
    score: float | None
    rank: int


class AgentSelectionResponse(BaseModel):
    recommendations: list[Recommendation]
    model_score: float | None = Field(description="posterior mean success of the top-ranked agent")
    model_version: int | None = Field(
        description="agent-router version serving the answer (None: lake posteriors)"
    )
    cold_start: bool = Field(description="the task type has no evidence in the served model")
    mode: str
    timestamp: str


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field("api", min_length=1, max_length=200, description="who acknowledges")


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(..., min_length=1, max_length=200, description="who approves")
    reason: str = Field(..., min_length=1, max_length=2000, description="why")


class Error(BaseModel):
    detail: Any


ERRORS = {401: {"model": Error}, 403: {"model": Error}, 404: {"model": Error}, 409: {"model": Error}}


def _message(errors: list[dict]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)


# ---- the app ----------------------------------------------------------------------------------------


def create_app(
    data_dir: str, tracking_uri: str | None = None, poll_seconds: float = 2.0, dagster_home: str | None = None
) -> FastAPI:
    paths = LakePaths.at(data_dir)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(data_dir)
    home = dagster_home or os.environ.get("DAGSTER_HOME")
    champion = api.ChampionModel(paths, uri, poll_seconds=poll_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        champion.start()
        # import the code location once in the background: /status lists its sensors and schedules
        threading.Thread(target=api.instigators, args=(None,), daemon=True).start()
        yield
        champion.stop()

    app = FastAPI(
        title="learning_pipeline Learning API",
        version="1.0.0",
        description="Metrics, agent performance, agent selection from the agent-router @champion, status, "
        "alerts and graduation approvals.",
        lifespan=lifespan,
    )
    app.state.champion = champion

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors, "message": _message(errors)})

    @app.get(f"{PREFIX}/metrics", tags=["learning"])
    def metrics() -> dict[str, Any]:
        """Learning-cycle counts, durations, samples, the champion's score and the mean accepted improvement."""
        return api.learning_metrics(paths)

    @app.get(f"{PREFIX}/agents/performance", tags=["learning"])
    def agents_performance(
        task_type: Annotated[str | None, Query(max_length=200, description="only this task type")] = None,
        window: Annotated[Literal["1h", "24h", "7d", "all"], Query(description="stats window")] = "all",
    ) -> list[dict[str, Any]]:
        """Per agent: success rate, average latency, total executions (from agent_stats / agent_task_stats)."""
        return api.agent_performance(paths, task_type, window)

    @app.post(f"{PREFIX}/predict/agent-selection", tags=["learning"], response_model=AgentSelectionResponse)
    async def agent_selection(body: AgentSelectionRequest) -> JSONResponse:
        """Top-k agents for a task from the agent-router @champion (refreshed without restart)."""
        # the answer is built to the response model's shape; returned as is (no second validation pass)
        return JSONResponse(champion.predict(body.task_type, body.context, body.top_k, body.mode))

    @app.get(f"{PREFIX}/status", tags=["learning"])
    def status() -> dict[str, Any]:
        """Service state, models loaded, last learning cycle, sensors and schedules."""
        found = api.instigators(home)
        return {
            "status": "running",
            "running": True,
            "data_dir": str(paths.root),
            "tracking_uri": uri,
            "models_loaded": [champion.model.info()],
            "champion_poll_seconds": champion.poll_seconds,
            "last_poll_at": champion.last_poll_at,
            "model_error": champion.last_error,
            "last_cycle": api.last_cycle(paths),
            "loop": api.loop_cycle(paths),
            "sensors": found.sensors,
            "schedules": found.schedules,
            "instigators_error": found.error,
            "approvals_enabled": bool(os.environ.get(api.TOKEN_ENV)),
        }

    @app.get(f"{PREFIX}/alerts", tags=["alerts"])
    def alerts(
        include_acknowledged: bool = False,
        alert_type: Annotated[str | None, Query(max_length=100)] = None,
    ) -> list[dict[str, Any]]:
        """Alerts, newest first (open ones unless include_acknowledged=true)."""
        return api.list_alerts(paths, include_acknowledged, alert_type)

    @app.post(f"{PREFIX}/alerts/{{alert_id}}/ack", tags=["alerts"], responses=ERRORS)
    def acknowledge(
        alert_id: Annotated[str, Path(max_length=100)], body: AckRequest | None = None
    ) -> dict[str, Any]:
        """Acknowledge one alert (404: unknown id, 409: already acknowledged)."""
        try:
            return api.acknowledge_alert(paths, alert_id, (body or AckRequest()).by)
        except api.NotFound as error:
            raise HTTPException(404, str(error)) from error
        except api.Conflict as error:
            raise HTTPException(409, str(error)) from error

    @app.get(f"{PREFIX}/graduation", tags=["graduation"])
    def graduation() -> dict[str, Any]:
        """Every version's gate, approval and stage; versions in shadow are eligible for live approval."""
        return api.graduation_status(paths, uri)

    @app.post(f"{PREFIX}/graduation/{{version}}/approve", tags=["graduation"], responses=ERRORS)
    def approve(
        version: Annotated[int, Path(ge=1, le=2**31 - 1)],
        body: ApproveRequest,
        x_api_token: Annotated[str | None, Header(description=f"must equal ${api.TOKEN_ENV}")] = None,
    ) -> dict[str, Any]:
        """shadow -> live for one version; needs the X-API-Token header (no token configured: 403)."""
        state = api.approval_token_state(os.environ.get(api.TOKEN_ENV), x_api_token)
        if state == "disabled":
            raise HTTPException(
                403, f"approvals are disabled: set {api.TOKEN_ENV} on the server to enable them"
            )
        if state != "ok":
            raise HTTPException(401, f"X-API-Token header {state}")
        try:
            return api.approve_live(paths, uri, version, body.by, body.reason)
        except api.Conflict as error:
            raise HTTPException(409, str(error)) from error

    return app


def serve(
    data_dir: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    tracking_uri: str | None = None,
    poll_seconds: float = 2.0,
    dagster_home: str | None = None,
    log_level: str = "info",
) -> None:
    import uvicorn

    app = create_app(data_dir, tracking_uri, poll_seconds, dagster_home)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
