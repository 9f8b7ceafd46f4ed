"""The autonomy resource: loop settings, approval thresholds, graduation criteria, webhook and the clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import dagster as dg

from learning_pipeline.lib.autonomy.alerts import WEBHOOK_ENV, AlertStore
from learning_pipeline.lib.autonomy.continuous import LoopSettings
from learning_pipeline.lib.autonomy.graduation import ApprovalThresholds, GraduationCriteria
from learning_pipeline.lib.autonomy.settings import SETTING_NAMES, SettingsStore
from learning_pipeline.lib.storage.lake import LakePaths

AUTO_APPROVE_ENV = "LEARNING_PIPELINE_AUTO_APPROVE"


class AutonomyResource(dg.ConfigurableResource):
    """Everything the autonomous loop decides with.

    now: an ISO timestamp that replaces the wall clock (tests, replays); empty = real UTC time.
    """

    now: str = ""
    # continuous learning
    continuous_learning: bool = True  # the operator's switch (the sensor must also be running)
    min_new_events: int = 100
    min_iteration_gap_minutes: float = 60.0
    max_iterations_per_day: int = 10
    convergence_threshold: float = 0.01
    convergence_cycles: int = 3
    shift_z: float = 4.0
    shift_window_hours: float = 48.0
    shift_min_samples: int = 30
    # auto-approval
    auto_approve: bool = False
    approve_min_success_rate: float = 0.5
    approve_min_samples: int = 200
    approve_min_improvement: float = 0.02
    approve_require_improvement: bool = True
    # graduation
    graduation_min_cycles: int = 3
    graduation_min_samples: int = 300
    graduation_min_success_rate: float = 0.6
    graduation_consistency_window: int = 3
    graduation_max_drawdown: float = 0.15
    graduation_demotion_drop: float = 0.10
    # alerts
    webhook_url: str = ""
    alert_dedup_hours: float = 24.0
    degradation_relative_drop: float = 0.10
    degradation_min_samples: int = 30

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

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(
            min_new_events=self.min_new_events,
            min_iteration_gap_minutes=self.min_iteration_gap_minutes,
            max_iterations_per_day=self.max_iterations_per_day,
            convergence_threshold=self.convergence_threshold,
            convergence_cycles=self.convergence_cycles,
            shift_z=self.shift_z,
            shift_window_hours=self.shift_window_hours,
            shift_min_samples=self.shift_min_samples,
        )

    def thresholds(self) -> ApprovalThresholds:
        return ApprovalThresholds(
            enabled=self.auto_approve,
            min_success_rate=self.approve_min_success_rate,
            min_samples=self.approve_min_samples,
            min_improvement=self.approve_min_improvement,
            require_improvement=self.approve_require_improvement,
        )

    def criteria(self) -> GraduationCriteria:
        return GraduationCriteria(
            min_cycles=self.graduation_min_cycles,
            min_samples=self.graduation_min_samples,
            min_success_rate=self.graduation_min_success_rate,
            consistency_window=self.graduation_consistency_window,
            max_drawdown=self.graduation_max_drawdown,
            demotion_drop=self.graduation_demotion_drop,
        )

    def alert_store(self, paths: LakePaths) -> AlertStore:
        return AlertStore(paths, dedup_hours=self.alert_dedup_hours)


def default_autonomy_resource() -> AutonomyResource:
    kwargs = {}
    if WEBHOOK_ENV in os.environ:
        kwargs["webhook_url"] = dg.EnvVar(WEBHOOK_ENV)
    if AUTO_APPROVE_ENV in os.environ:
        kwargs["auto_approve"] = os.environ[AUTO_APPROVE_ENV].strip().lower() in ("1", "true", "yes", "on")
    return AutonomyResource(**kwargs)
