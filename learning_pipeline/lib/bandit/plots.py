"""Plots of what the bandit learned, as PNG files: the posteriors per task type, daily success per agent.

The same posterior plot serves the `agent_posteriors` asset (shown in the Dagster UI) and the MLflow run of
every learning cycle. It is sized for a browser column about 900 pixels wide: 9 inches at 100 dpi.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from learning_pipeline.lib.bandit.thompson import ALL

WIDTH_IN = 9.0
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = DPI) -> Path:
    """Write the figure atomically (a reader never sees half a PNG) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def plot_posteriors(posteriors: pd.DataFrame, path: Path, max_tasks: int = 12, max_agents: int = 10) -> Path:
    """Posterior mean and 95% credible interval of each agent, one panel per task type (task level).

    `posteriors` has the columns of `thompson.POSTERIOR_COLUMNS`; the rows with context_key '*' and a real
    task type are drawn. Task types with the most events come first; beyond `max_tasks` (and `max_agents`
    agents per task type, by posterior mean) the title says how many are shown of how many. The agent most
    likely to be best (P(best), right axis) is orange.
    """
    plt = _pyplot()
    broad = posteriors[(posteriors["context_key"] == ALL) & (posteriors["task_type"] != ALL)]
    events = broad.groupby("task_type")["n_events"].sum()
    tasks = sorted(events.index, key=lambda t: (-events[t], t))
    shown = tasks[:max_tasks]
    agents_per_task = int(broad.groupby("task_type").size().max()) if len(broad) else 0
    n_agents = min(agents_per_task, max_agents)

    if not shown:
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 2.0), layout="constrained")
        ax.text(0.5, 0.5, "no task-level posteriors yet", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)

    cols = 1 if len(shown) == 1 else 2
    rows = math.ceil(len(shown) / cols)
    panel_h = 0.9 + 0.3 * n_agents
    fig, axes = plt.subplots(
        rows, cols, figsize=(WIDTH_IN, 0.6 + rows * panel_h), squeeze=False, layout="constrained"
    )
    for ax, task in zip(axes.flat, shown, strict=False):
        rows_t = broad[broad["task_type"] == task].sort_values("mean", ascending=False).head(max_agents)
        rows_t = rows_t.iloc[::-1]  # highest mean at the top
        y = range(len(rows_t))
        best = rows_t["p_best"].to_numpy().argmax()
        for i, r in enumerate(rows_t.itertuples(index=False)):
            ax.errorbar(
                r.mean,
                i,
                xerr=[[max(r.mean - r.ci_low, 0.0)], [max(r.ci_high - r.mean, 0.0)]],
                fmt="o",
                markersize=4,
                capsize=2,
                color="C1" if i == best else "C0",
            )
        ax.set_yticks(list(y), [str(a) for a in rows_t["agent_name"]], fontsize=9)
        ax.set_ylim(-0.6, len(rows_t) - 0.4)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(list(y), [f"{p:.2f}" for p in rows_t["p_best"]], fontsize=8)
        right.tick_params(length=0)
        more = f", top {len(rows_t)} of {agents_per_task} agents" if agents_per_task > len(rows_t) else ""
        ax.set_title(f"{task} ({int(events[task]):,} events{more})", fontsize=10)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    for ax in axes[-1]:
        if ax.has_data():
            ax.set_xlabel("success rate: posterior mean, 95% interval", fontsize=9)
    n_tasks = len(tasks)
    if n_tasks == 1:
        which = "1 task type"
    elif len(shown) == n_tasks:
        which = f"all {n_tasks} task types, most events first"
    else:
        which = f"{len(shown)} of {n_tasks} task types, most events first"
    fig.suptitle(f"Agent posteriors: {which}; right: P(best)", fontsize=11)
    return _save(fig, path)


def plot_success_over_time(
    daily: pd.DataFrame, path: Path, held_out: tuple[str, str] | None = None, max_agents: int = 10
) -> Path:
    """daily: columns day, agent_name, success_rate, n (the training window, then the held-out days). `held_out`
    (first, last day) is shaded: the days the candidate was evaluated on, never trained on. A day's point sits
    at its noon, inside its shading."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.0), layout="constrained")
    if not daily.empty:
        top = daily.groupby("agent_name")["n"].sum().sort_values(ascending=False).index[:max_agents]
        for agent in top:
            sub = daily[daily["agent_name"] == agent].sort_values("day")
            noon = pd.to_datetime(sub["day"]) + pd.Timedelta(hours=12)
            ax.plot(noon, sub["success_rate"], marker=".", label=str(agent))
    title = "Daily success rate per agent"
    if held_out is not None:
        first, last = pd.to_datetime(held_out[0]), pd.to_datetime(held_out[1]) + pd.Timedelta(days=1)
        ax.axvspan(first, last, color="0.85", label="held-out (evaluated)")
        ax.set_xlim(right=last + pd.Timedelta(hours=12))
        title += f"; held-out {held_out[0]}" + (f" .. {held_out[1]}" if held_out[1] != held_out[0] else "")
    if ax.has_data():
        ax.legend(fontsize=8, ncol=2, loc="lower left")
    ax.set_ylim(0, 1)
    ax.set_ylabel("success rate", fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.autofmt_xdate()
    return _save(fig, path)
