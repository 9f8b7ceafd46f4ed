"""The control plane over HTTP: read the loop's settings openly, change them with the token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from learning_pipeline.lib.autonomy.settings import LoopControl, SettingsStore
from learning_pipeline.service.security import require_token


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(..., min_length=1, max_length=200, description="who changes the settings")
    reason: str = Field(..., min_length=1, max_length=2000, description="why")
    changes: LoopControl = Field(..., description="the settings to change; null resets one to its default")


def _defaults() -> dict[str, Any]:
    from learning_pipeline.defs.autonomy.resources import default_autonomy_resource

    return default_autonomy_resource().settings_defaults()


def control_router(service) -> APIRouter:
    router = APIRouter(tags=["control"])

    def store() -> SettingsStore:
        return SettingsStore(service.paths)

    @router.get("/settings")
    def settings() -> dict[str, Any]:
        """The loop's effective settings, the operator's overrides and the defaults they replace."""
        defaults, overrides = _defaults(), store().overrides()
        return {"settings": {**defaults, **overrides}, "overrides": overrides, "defaults": defaults}

    @router.patch("/settings", dependencies=[Depends(require_token)], responses={401: {}, 403: {}})
    def change(body: SettingsChange) -> dict[str, Any]:
        """Change settings (validated: 422 names the field); each change is recorded with who, why, old, new."""
        changes = body.changes.model_dump(exclude_unset=True)
        if not changes:
            raise HTTPException(422, "changes: name at least one setting")
        try:
            records = store().change(changes, body.by, body.reason, _defaults())
        except ValueError as error:
            raise HTTPException(422, str(error)) from error
        return {"changed": records}

    @router.get("/settings/history")
    def history(limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> list[dict[str, Any]]:
        """Every settings change, newest first."""
        frame = store().history(limit)
        frame["at"] = frame["at"].map(lambda v: v.isoformat())
        return frame.to_dict("records")

    return router
