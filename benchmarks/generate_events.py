"""Write N simulated outcome events into a data directory's landing zone and report the rate.

python benchmarks/generate_events.py --events 10000000 --data-dir /tmp/bench-data
"""

from __future__ import annotations

import math
from datetime import date

import _common

from learning_pipeline.lib.simulation.simulate import SimulationConfig, write_simulation


def main() -> None:
    parser = _common.simulation_parser(
        __doc__, events=1_000_000, days=10, data_dir="/tmp/learning-pipeline-bench"
    )
    parser.add_argument("--file-events", type=int, default=100_000)
    parser.add_argument("--malformed-share", type=float, default=0.001)
    parser.add_argument("--duplicate-share", type=float, default=0.01)
    parser.add_argument("--propensities", action="store_true")
    parser.add_argument("--end-date", default=date.today().isoformat())
    options = vars(parser.parse_args())  # the other options are SimulationConfig fields of the same name
    events, data_dir = options.pop("events"), options.pop("data_dir")
    config = SimulationConfig(events_per_day=math.ceil(events / options["days"]), **options)
    result, seconds = _common.timed(write_simulation, config, data_dir)
    print(
        f"{result.events} events ({result.lines} lines, {len(result.files)} files, "
        f"{result.bytes / 1e6:.0f} MB) in {seconds:.1f} s: {result.lines / seconds:,.0f} lines/s, "
        f"{result.bytes / 1e6 / seconds:.0f} MB/s"
    )


if __name__ == "__main__":
    main()
