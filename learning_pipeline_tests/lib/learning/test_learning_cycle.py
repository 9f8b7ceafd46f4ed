"""The cycle's single-scan training aggregates equal the agent_daily_stats SQL model; window arithmetic."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.lib.bandit import thompson
from learning_pipeline.lib.learning.cycle import (
    CycleConfig,
    Window,
)
from learning_pipeline.lib.learning.data import daily_aggregates, daily_from_cells, joint_cells
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._models_fixtures import simulated_lake

KEYS = ["event_date", "task_type", "context_key", "context_value", "agent_name"]


def test_daily_aggregates_from_one_scan_equal_the_sql_model(tmp_path):
    paths, _, _ = simulated_lake(
        tmp_path / "data", days=3, events_per_day=3000, seed=2, end_date="2025-02-03", propensities=True
    )
    start, end = date(2025, 2, 1), date(2025, 2, 3)
    # events without a task type or a complexity exercise the NULL rules
    day_dir = paths.partition_dir("outcome_events", "2025-02-02")
    with lake_connection(paths) as con:
        con.execute(
            f"COPY (SELECT * REPLACE (NULL::VARCHAR AS task_type, NULL::VARCHAR AS action_type, "
            f"'{{\"domain\": \"legal\"}}' AS context, 'x-' || event_id AS event_id) "
            f"FROM read_parquet('{day_dir / 'data.parquet'}') LIMIT 50) TO '{day_dir / 'extra.parquet'}' (FORMAT parquet)"
        )
    with lake_connection(paths) as con:
        sql_model = daily_aggregates(con, start, end, ("complexity", "domain"))
        cells = joint_cells(con, start, end, ("complexity", "domain"), "graded")
    ours = daily_from_cells(cells, ("complexity", "domain"))
    theirs = sql_model[thompson.DAILY_COLUMNS].copy()
    ours, theirs = (
        frame.assign(event_date=pd.to_datetime(frame["event_date"]).dt.date).sort_values(
            KEYS, ignore_index=True
        )
        for frame in (ours, theirs)
    )
    assert len(ours) == len(theirs)
    assert ours[KEYS].astype(str).equals(theirs[KEYS].astype(str))
    for column in ("n_events", "successes", "failures", "partials", "timeouts", "partial_reward"):
        np.testing.assert_allclose(
            ours[column].to_numpy(float), theirs[column].to_numpy(float), err_msg=column
        )
    assert (ours["task_type"] == "unspecified").any()


def test_window_for_a_partition():
    config = CycleConfig(window_days=7, eval_days=2)
    window = Window.for_partition("2025-03-10", config)
    assert (window.train_start, window.cutoff, window.eval_end) == (
        date(2025, 3, 2),
        date(2025, 3, 9),
        date(2025, 3, 10),
    )
    with pytest.raises(ValueError):
        CycleConfig(reward_rule="bogus")
