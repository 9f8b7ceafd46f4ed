"""A short run of the closed-loop benchmark (benchmarks/bench_closed_loop.py): served decisions, logged
propensities, daily ingest and cycles, an accepted version made live and learning online, and the per-event
baselines."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_closed_loop.py"


def test_short_closed_loop_learns_from_its_own_logged_decisions(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_closed_loop", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(
        [
            "--days",
            "4",
            "--requests-per-day",
            "500",
            "--switch-day",
            "3",
            "--window-days",
            "2",
            "--online-epoch-seconds",  # live versions learn online; cycles replay them with their evidence
            "60",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    days = result["days"]
    assert [d["propensity_share"] for d in days] == [1.0] * 4  # every decision logged with its propensity
    cycles = [d for d in days if "estimator" in d]
    assert cycles and all(d["estimator"] == "dr" and d["coverage"] == 1.0 for d in cycles)
    assert result["live"], "an accepted version was made live"
    # the decision service picked the live version up: some day was served by it, not by the cold start
    assert any(d["live_version"] == entry["version"] for entry in result["live"] for d in days)
    regret = {n: sum(d[f"regret.{n}"] for d in days) for n in result["names"]}
    assert set(regret) == {"loop", "uniform", "best_fixed", "mabwiser_ts", "vw_cb_adf"}
    assert regret["loop"] < regret["uniform"]
    assert (tmp_path / "out" / "cumulative_regret.png").stat().st_size > 10_000
