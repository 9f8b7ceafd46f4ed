"""The autonomy resource: loop settings, approval thresholds, graduation criteria, webhook and the clock."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime

import dagster as dg

from learning_pipeline.lib.autonomy.alerts import DEDUP_HOURS, WEBHOOK_ENV, AlertStore, DegradationRule
from learning_pipeline.lib.autonomy.continuous import LoopSettings
from learning_pipeline.lib.autonomy.graduation import ApprovalThresholds, GraduationCriteria
from learning_pipeline.lib.autonomy.settings import SETTING_NAMES, SettingsStore
from learning_pipeline.lib.storage.lake import LakePaths

AUTO_APPROVE_ENV = "LEARNING_PIPELINE_AUTO_APPROVE"


_LOOP, _APPROVAL, _GRADUATION, _DEGRADATION = (
    LoopSettings(),
    ApprovalThresholds(),
    GraduationCriteria(),
    DegradationRule(),
)


class AutonomyResource(dg.ConfigurableResource):
    """Everything the autonomous loop decides with. The defaults are those of the lib objects each group of
    fields builds (LoopSettings, ApprovalThresholds, GraduationCriteria, DegradationRule): one home each.

    now: an ISO timestamp that replaces the wall clock (tests, replays); empty = real UTC time.
    """

    now: str = ""
    # continuous learning
    continuous_learning: bool = True  # the operator's switch (the sensor must also be running)
    min_new_events: int = _LOOP.min_new_events
    min_iteration_gap_minutes: float = _LOOP.min_iteration_gap_minutes
    max_iterations_per_day: int = _LOOP.max_iterations_per_day
    convergence_threshold: float = _LOOP.convergence_threshold
    convergence_cycles: int = _LOOP.convergence_cycles
    shift_z: float = _LOOP.shift_z
    shift_window_hours: float = _LOOP.shift_window_hours
    shift_min_samples: int = _LOOP.shift_min_samples
    # auto-approval
    auto_approve: bool = _APPROVAL.enabled
    approve_min_success_rate: float = _APPROVAL.min_success_rate
    approve_min_samples: int = _APPROVAL.min_samples
    approve_min_improvement: float = _APPROVAL.min_improvement
    approve_require_improvement: bool = _APPROVAL.require_improvement
    # graduation
    graduation_min_cycles: int = _GRADUATION.min_cycles
    graduation_min_samples: int = _GRADUATION.min_samples
    graduation_min_success_rate: float = _GRADUATION.min_success_rate
    graduation_consistency_window: int = _GRADUATION.consistency_window
    graduation_max_drawdown: float = _GRADUATION.max_drawdown
    graduation_demotion_drop: float = _GRADUATION.demotion_drop
    # alerts
    webhook_url: str = ""
    alert_dedup_hours: float = DEDUP_HOURS
    degradation_relative_drop: float = _DEGRADATION.relative_drop
    degradation_min_samples: int = _DEGRADATION.min_samples

    def clock(self) -> datetime:
        if not self.now:
            return datetime.now(UTC)
        value = datetime.fromisoformat(self.now)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def settings_defaults(self) -> dict:
        """The run-time settings (lib/autonomy/settings.py) as configured here: their defaults."""
        return {name: getattr(self, name) for name in SETTING_NAMES}

    def effective(self, paths: LakePaths) -> AutonomyResource:
        """This resource with the operator's stored settings applied (what the sensors and assets decide with)."""
        overrides = SettingsStore(paths).overrides()
        if not overrides:
            return self
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return AutonomyResource(**{**fields, **overrides})

    def _build(self, cls, prefix: str, **renamed: str):
        """A `cls` from this resource's fields: field f of cls takes `renamed[f]` or `prefix + f`; fields of
        cls with no such resource field keep their defaults."""
        own = type(self).model_fields
        names = {f.name: renamed.get(f.name, prefix + f.name) for f in dataclasses.fields(cls)}
        return cls(**{f: getattr(self, name) for f, name in names.items() if name in own})

    def loop_settings(self) -> LoopSettings:
        return self._build(LoopSettings, "")

    def thresholds(self) -> ApprovalThresholds:
        return self._build(ApprovalThresholds, "approve_", enabled="auto_approve")

    def criteria(self) -> GraduationCriteria:
        return self._build(GraduationCriteria, "graduation_")

    def degradation_rule(self) -> DegradationRule:
        return self._build(DegradationRule, "degradation_")

    def alert_store(self, paths: LakePaths) -> AlertStore:
        return AlertStore(paths, dedup_hours=self.alert_dedup_hours)


def default_autonomy_resource() -> AutonomyResource:
    kwargs = {}
    if WEBHOOK_ENV in os.environ:
        kwargs["webhook_url"] = dg.EnvVar(WEBHOOK_ENV)
    if AUTO_APPROVE_ENV in os.environ:
        kwargs["auto_approve"] = os.environ[AUTO_APPROVE_ENV].strip().lower() in ("1", "true", "yes", "on")
    return AutonomyResource(**kwargs)
