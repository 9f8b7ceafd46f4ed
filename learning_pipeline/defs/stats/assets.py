"""agent_daily_stats (one partition per UTC day) and the agent_stats / agent_task_stats marts.

The marts never rescan all history: the 'all' window, the EMA and the all-time latency quantiles come from
the daily aggregates, and so do the 7d window and the 7d before it (whole UTC days); only the last 2-3 partitions of
raw events are read, for the 1h/24h windows and the windows before them (trends).
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pyarrow as pa

from learning_pipeline.defs.metadata import markdown_table
from learning_pipeline.defs.partitions import ALL_DAYS, ONE_DAY, daily_partitions, follows_new_data
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.events.schema import OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic
from learning_pipeline.lib.storage.sql_runner import SqlProject
from learning_pipeline.lib.storage.warehouse import lake_connection, table_names

DAILY_TABLES = ("agent_daily_stats", "agent_daily_errors", "agent_daily_latency_hist")
STATS_MARTS = ("agent_stats", "agent_task_stats")
OUTCOME_EVENTS = dg.AssetKey("outcome_events")
DEFAULT_CONTEXT_KEYS = ["complexity", "domain"]
RECENT_DAYS = 2  # the 24h window and the 24h window before it (events after T - 48h)


def stats_connection(paths: LakePaths) -> duckdb.DuckDBPyConnection:
    """Lake views on an in-memory connection; an empty `outcome_events` when the lake has none yet."""
    con = lake_connection(paths)
    names = table_names(con)
    if "outcome_events" not in names:
        empty = OUTCOME_EVENT_SCHEMA.empty_table().append_column("event_date", pa.array([], pa.date32()))
        con.register("_empty_outcome_events", empty)
        con.execute('CREATE VIEW outcome_events AS SELECT * FROM "_empty_outcome_events"').fetchall()
    return con


class DailyStatsConfig(dg.Config):
    context_keys: list[str] = DEFAULT_CONTEXT_KEYS
    latency_buckets_per_e: int = 20


@dg.asset(
    partitions_def=daily_partitions,
    deps=[dg.AssetDep(OUTCOME_EVENTS)],
    kinds={"duckdb", "parquet"},
    group_name="stats",
    tags=ONE_DAY,
    description="Additive counts and sums per (day, agent, task_type, context bucket), plus daily error "
    "counts (lake/agent_daily_errors) and latency log-histograms (lake/agent_daily_latency_hist).",
    automation_condition=dg.AutomationCondition.eager(),
)
def agent_daily_stats(
    context: dg.AssetExecutionContext, config: DailyStatsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    day = context.partition_key
    paths = lake.paths
    project = SqlProject.load()
    with stats_connection(paths) as con:
        project.run(
            con,
            select=list(DAILY_TABLES),
            vars={
                "start_date": day,
                "end_date": day,
                "context_keys": list(config.context_keys),
                "latency_buckets_per_e": config.latency_buckets_per_e,
            },
        )
        counts = {}
        for table in DAILY_TABLES:
            arrow = con.sql(f'SELECT * EXCLUDE (event_date) FROM "{table}"').to_arrow_table()
            write_parquet_atomic(paths.partition_dir(table, day) / "data.parquet", arrow)
            counts[table] = arrow.num_rows
        n_events, successes = con.execute(
            "SELECT coalesce(sum(n_events), 0), coalesce(sum(successes), 0) FROM agent_daily_stats "
            "WHERE task_type <> '*' AND context_key = '*'"
        ).fetchall()[0]
        preview = markdown_table(
            con.execute(
                "SELECT agent_name, task_type, n_events, successes, failures, partials, timeouts "
                "FROM agent_daily_stats WHERE task_type <> '*' AND context_key = '*' ORDER BY n_events DESC LIMIT 10"
            ).df(),
            empty="(empty)",
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["agent_daily_stats"],
            "n_events": dg.MetadataValue.int(int(n_events)),
            # the day's success rate over every agent and task type (a number Dagster charts by partition)
            "success_rate": dg.MetadataValue.float(float(successes) / n_events if n_events else 0.0),
            "error_rows": counts["agent_daily_errors"],
            "latency_hist_rows": counts["agent_daily_latency_hist"],
            "preview": preview,
        }
    )


class StatsConfig(dg.Config):
    as_of: str | None = None  # ISO timestamp; default: the latest event time in the daily aggregates
    ema_alpha: float = 0.3
    context_keys: list[str] = DEFAULT_CONTEXT_KEYS


def reference_time(con: duckdb.DuckDBPyConnection, as_of: str | None) -> datetime | None:
    if as_of:
        value = datetime.fromisoformat(as_of)
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    names = table_names(con)
    if "agent_daily_stats" not in names:
        return None
    return con.execute("SELECT max(last_event_at) FROM agent_daily_stats").fetchall()[0][0]


def run_stats_marts(paths: LakePaths, as_of: str | None = None, ema_alpha: float = 0.3, context_keys=None):
    """Run the marts over the lake's daily aggregates; returns {mart: arrow table} and the reference time."""
    project = SqlProject.load()
    with stats_connection(paths) as con:
        names = table_names(con)
        missing = [t for t in DAILY_TABLES if t not in names]
        if missing:
            raise dg.Failure(
                f"no daily aggregates in the lake yet ({', '.join(missing)}): materialize agent_daily_stats"
            )
        ref = reference_time(con, as_of)
        if ref is None:
            raise dg.Failure("cannot determine the reference time: no events")
        recent_from = (ref - timedelta(days=RECENT_DAYS)).date()
        project.run(
            con,
            select=list(STATS_MARTS),
            exclude=list(DAILY_TABLES),
            vars={
                "as_of": ref,
                "recent_from": recent_from,
                "ema_alpha": ema_alpha,
                "context_keys": list(context_keys or DEFAULT_CONTEXT_KEYS),
            },
        )
        return {m: con.sql(f'SELECT * FROM "{m}"').to_arrow_table() for m in STATS_MARTS}, ref


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            deps=[dg.AssetDep("agent_daily_stats"), dg.AssetDep(OUTCOME_EVENTS)],
            kinds={"duckdb", "parquet"},
            group_name="stats",
            tags=ALL_DAYS,
            description=desc,
            automation_condition=follows_new_data,
        )
        for name, desc in (
            (
                "agent_stats",
                "Per agent and context bucket: counts, rates, latency, tokens, cost, quality over "
                "1h/24h/7d/all windows, EMA and trend versus the previous window.",
            ),
            (
                "agent_task_stats",
                "Per (task_type, agent) and context bucket: the same measures as agent_stats.",
            ),
        )
    ],
)
def agent_stats_marts(context: dg.AssetExecutionContext, config: StatsConfig, lake: LakeResource):
    paths = lake.paths
    tables, ref = run_stats_marts(paths, config.as_of, config.ema_alpha, config.context_keys)
    for name, table in tables.items():
        write_parquet_atomic(paths.table(name) / "data.parquet", table)
        frame = table.to_pandas()
        top = frame[(frame["context_key"] == "*") & (frame["window_name"] == "all")].head(15)
        cols = [
            c
            for c in (
                "task_type",
                "agent_name",
                "executions",
                "success_rate",
                "latency_p95_ms",
                "quality_mean",
                "ema_success_rate",
            )
            if c in top.columns
        ]
        overall = frame[(frame["context_key"] == "*") & (frame["window_name"] == "all")]
        executions = float(overall["executions"].sum()) if "executions" in overall else 0.0
        rate = (
            float((overall["success_rate"] * overall["executions"]).sum()) / executions if executions else 0.0
        )
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "dagster/row_count": table.num_rows,
                # all-time, execution-weighted over the rows (agents, or task types x agents): charted per run
                "success_rate_all_time": dg.MetadataValue.float(rate),
                "agents": dg.MetadataValue.int(int(overall["agent_name"].nunique()) if len(overall) else 0),
                "as_of": ref.isoformat(),
                "preview": markdown_table(top[cols], empty="(empty)"),
            },
        )
