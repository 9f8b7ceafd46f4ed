"""Training-data benchmark: PII redaction throughput and the sft_pairs / routing_pairs builds.

    python benchmarks/bench_training.py --events 200000

Simulates one day of events (5% of texts carry an e-mail address or phone number), writes it as a lake
partition, then times: the redaction query alone over the input and output texts of every event,
build_sft_pairs for that day, and build_routing_pairs over the whole lake.
"""

from __future__ import annotations

import tempfile

import _common
import duckdb
import pyarrow.compute as pc

from learning_pipeline.lib.events.pii import redaction_query
from learning_pipeline.lib.events.schema import OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.simulation.simulate import SimulationConfig, generate_table
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic
from learning_pipeline.lib.training.training_data import build_routing_pairs, build_sft_pairs


def main() -> None:
    parser = _common.parser(__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    table = generate_table(
        SimulationConfig(days=1, events_per_day=args.events, seed=1, end_date="2025-03-01"), lineage=True
    )
    day = pc.strftime(table.column("timestamp"), format="%Y-%m-%d")[0].as_py()
    with tempfile.TemporaryDirectory() as tmp:
        paths = LakePaths.at(tmp).ensure()
        write_parquet_atomic(
            paths.partition_dir("outcome_events", day) / "data.parquet",
            table.select(OUTCOME_EVENT_SCHEMA.names),
        )
        texts = table.select(["input", "output"])
        with duckdb.connect() as con:
            con.register("texts", texts)
            _, seconds = _common.timed(
                con.execute, f"CREATE TABLE r AS {redaction_query('texts', ['input', 'output'])}"
            )
        n = table.num_rows
        print(f"redaction: {n:,} rows x 2 columns in {seconds:.2f} s = {n / seconds:,.0f} rows/s")
        sft, seconds = _common.timed(build_sft_pairs, paths, day)
        print(
            f"sft_pairs: {n:,} events -> {sft.exported:,} pairs in {seconds:.2f} s = {n / seconds:,.0f} events/s"
            f" ({sft.counts}, redactions {sft.redactions})"
        )
        routing, seconds = _common.timed(build_routing_pairs, paths)
        print(
            f"routing_pairs: {n:,} events -> {routing.table.num_rows} rows in {seconds:.2f} s "
            f"= {n / seconds:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
