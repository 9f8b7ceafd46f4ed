"""Write N simulated outcome events into a data directory's landing zone and report the rate.

python benchmarks/generate_events.py --events 10000000 --data-dir /tmp/bench-data
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import date

from learning_pipeline.lib.simulation.simulate import SimulationConfig, write_simulation


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--data-dir", default="/tmp/learning-pipeline-bench")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--file-events", type=int, default=100_000)
    parser.add_argument("--malformed-share", type=float, default=0.001)
    parser.add_argument("--duplicate-share", type=float, default=0.01)
    parser.add_argument("--propensities", action="store_true")
    parser.add_argument("--end-date", default=date.today().isoformat())
    args = parser.parse_args()

    config = SimulationConfig(
        days=args.days,
        events_per_day=math.ceil(args.events / args.days),
        seed=args.seed,
        end_date=args.end_date,
        file_events=args.file_events,
        malformed_share=args.malformed_share,
        duplicate_share=args.duplicate_share,
        propensities=args.propensities,
    )
    start = time.perf_counter()
    result = write_simulation(config, args.data_dir)
    seconds = time.perf_counter() - start
    print(
        f"{result.events} events ({result.lines} lines, {len(result.files)} files, "
        f"{result.bytes / 1e6:.0f} MB) in {seconds:.1f} s: {result.lines / seconds:,.0f} lines/s, "
        f"{result.bytes / 1e6 / seconds:.0f} MB/s"
    )


if __name__ == "__main__":
    main()
