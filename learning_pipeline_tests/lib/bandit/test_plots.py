"""The posterior plot: one panel per task type, 900 pixels wide, written atomically, also when empty."""

import struct

import pandas as pd

from learning_pipeline.lib.bandit.plots import plot_posteriors, plot_success_over_time
from learning_pipeline.lib.bandit.thompson import compute_posteriors
from learning_pipeline.lib.simulation import SimulationConfig, generate_table
from learning_pipeline_tests._learning_fixtures import daily_stats


def png_size(path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_posterior_plot_sizes(tmp_path):
    table = generate_table(
        SimulationConfig(days=2, events_per_day=2000, end_date="2025-06-30", agents=12, task_types=20),
        lineage=True,
    )
    post = compute_posteriors(daily_stats(table), n_samples=100)
    few, many = tmp_path / "few.png", tmp_path / "plots" / "many.png"
    plot_posteriors(post, few, max_tasks=2, max_agents=3)
    plot_posteriors(post, many)
    (w_few, h_few), (w_many, h_many) = png_size(few), png_size(many)
    assert w_few == w_many == 900  # the width of a browser column, whatever the number of task types
    assert h_few < h_many  # panels grow with task types and agents shown
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["few.png", "many.png", "plots"]  # no temp files


def test_empty_inputs_still_give_a_picture(tmp_path):
    post = plot_posteriors(pd.DataFrame(columns=["task_type", "context_key", "n_events"]), tmp_path / "p.png")
    days = plot_success_over_time(
        pd.DataFrame(columns=["day", "agent_name", "success_rate", "n"]), tmp_path / "d.png"
    )
    assert png_size(post)[0] == 900 and days.stat().st_size > 1000
