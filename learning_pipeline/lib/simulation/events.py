"""Event generation: simulated outcome events drawn from `SimulationTruth`, as typed tables or JSON lines.

Generation is vectorized: numpy draws the columns, DuckDB composes the strings and JSON lines. Work is
split into independent units (one day, or a slice of a busy day) seeded by `(seed, day, slice)`, so the
output depends on the seed and the volume only, not on file sizes, and memory stays bounded for tens of
millions of events.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from learning_pipeline.lib.events.schema import EVENT_FIELDS, LINEAGE_FIELDS, OUTCOME_EVENT_SCHEMA
from learning_pipeline.lib.simulation.config import (
    BAD_EVENT_ID_PREFIX,
    BAD_RECORD_KINDS,
    OVERSIZED_BYTES,
    OVERSIZED_KIND,
    SimulationConfig,
)
from learning_pipeline.lib.simulation.truth import SimulationTruth

_AGENT_TYPES = ("reasoning", "debate", "evaluation", "governance", "planning", "coding", "processing")
_MODELS = (  # model, provider, USD per 1k tokens
    ("gpt-4o", "openai", 0.005),
    ("claude-3-5-sonnet", "anthropic", 0.006),
    ("gpt-4o-mini", "openai", 0.0006),
    ("llama-3.1-70b", "meta", 0.0009),
    ("gemini-1.5-pro", "google", 0.0035),
    ("mistral-large", "mistral", 0.002),
)
_VERBS = ("analyze", "review", "write", "summarize", "answer", "plan", "extract", "assess", "classify")
_NOUNS = ("report", "contract", "module", "document", "question", "roadmap", "invoice", "portfolio", "ticket")
_ERRORS = ("ValueError", "RateLimitError", "ToolError", "KeyError")
_ERROR_WEIGHTS = (0.4, 0.25, 0.25, 0.1)
_NON_SUCCESS = ("partial", "timeout", "failure")
_NON_SUCCESS_WEIGHTS = (0.35, 0.2, 0.45)
_TIMEOUT_BUDGET_MS = 30_000.0
_UNIT_EVENTS = 200_000  # events per generation unit (bounds memory; part of the seeded stream layout)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _uuid4_array(rng: np.random.Generator, n: int) -> pa.StringArray:
    """n random (seeded) UUID4 strings, built as bytes without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in (
        (slice(0, 8), slice(0, 8)),
        (slice(8, 12), slice(9, 13)),
        (slice(12, 16), slice(14, 18)),
        (slice(16, 20), slice(19, 23)),
        (slice(20, 32), slice(24, 36)),
    ):
        out[:, dst] = hexed[:, src]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def _decode(codes: np.ndarray, names) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int32()), pa.array(list(names), pa.string())
    ).cast(pa.string())


@dataclass(frozen=True)
class _Unit:
    day: int
    part: int
    parts: int
    n: int


def _units(cfg: SimulationConfig) -> list[_Unit]:
    units = []
    for day in range(cfg.days):
        parts = max(1, math.ceil(cfg.events_per_day / _UNIT_EVENTS))
        for part in range(parts):
            lo = cfg.events_per_day * part // parts
            hi = cfg.events_per_day * (part + 1) // parts
            units.append(_Unit(day, part, parts, hi - lo))
    return units


def _base_columns(cfg: SimulationConfig, truth: SimulationTruth, unit: _Unit, rng, now_us: int) -> pa.Table:
    """Draw one unit of events as raw columns (codes, numbers); strings are composed in SQL."""
    n = unit.n
    n_a = len(cfg.agents)
    day_start = datetime.combine(cfg.day_date(unit.day), datetime.min.time(), tzinfo=UTC)
    day_start_us = int(day_start.timestamp() * 1_000_000)
    span = min(86_400_000_000, max(1, now_us - day_start_us))
    lo = day_start_us + span * unit.part // unit.parts
    hi = day_start_us + span * (unit.part + 1) // unit.parts
    ts = np.sort(rng.integers(lo, max(hi, lo + 1), size=n))

    task = rng.choice(len(cfg.task_types), size=n, p=truth.task_probs)
    cx = rng.choice(len(cfg.complexities), size=n, p=truth.complexity_probs)
    dom = rng.choice(len(cfg.domains), size=n, p=truth.domain_probs)
    if cfg.propensities:
        cum = np.cumsum(truth.logging_policy, axis=1)[task]
        agent = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), n_a - 1)
        propensity = truth.logging_policy[task, agent]
    else:
        agent = rng.integers(0, n_a, size=n)
        propensity = np.full(n, np.nan)
    p_success = truth.success[truth.regime(unit.day)][agent, task, cx, dom]
    u = rng.random(n)
    other = rng.choice(3, size=n, p=_NON_SUCCESS_WEIGHTS)
    status = np.where(u < p_success, 0, other + 1)  # 0 success, 1 partial, 2 timeout, 3 failure

    # Latencies: agent speed x complexity, lognormal; timeouts hit the budget.
    agent_median = 350.0 * (1.0 + (np.arange(n_a) * 0.618) % 1.0 * 4.0)  # deterministic per agent, 350..1750
    if cfg.cost_tradeoff:
        agent_median = truth.agent_latency_ms
    cx_mult = np.linspace(0.7, 1.8, len(cfg.complexities))
    llm = agent_median[agent] * cx_mult[cx] * rng.lognormal(0.0, 0.45, size=n)
    overhead = rng.lognormal(math.log(40.0), 0.5, size=n)
    timeout = status == 2
    llm = np.where(timeout, _TIMEOUT_BUDGET_MS * rng.uniform(0.9, 1.0, size=n), llm)
    latency = llm + overhead
    duration = latency + rng.lognormal(math.log(5.0), 0.6, size=n)
    llm, latency, duration = (np.round(x, 1) for x in (llm, latency, duration))
    latency = np.maximum(latency, llm + 0.1)
    duration = np.maximum(duration, latency)

    tokens = np.maximum(
        1,
        np.round(
            np.geomspace(300, 2000, len(cfg.complexities))[cx]
            * (0.8 + 0.1 * agent)
            * rng.lognormal(0, 0.4, size=n)
        ),
    ).astype(np.int64)
    model = agent % len(_MODELS)
    price = np.array([m[2] for m in _MODELS])[model]
    cost = np.round(tokens / 1000.0 * price, 6)
    if cfg.cost_tradeoff:
        cost = np.round(truth.agent_cost_usd[agent] * rng.lognormal(0.0, 0.25, size=n), 6)
    quality = np.select(
        [status == 0, status == 1], [rng.beta(8, 2, size=n), rng.beta(4, 4, size=n)], rng.beta(1, 8, size=n)
    )
    quality = np.round(quality, 3)
    error = rng.choice(len(_ERRORS), size=n, p=_ERROR_WEIGHTS)
    critical = rng.random(n) < 0.05
    severity = np.select([status == 0, status == 1, status == 2, critical], [0, 1, 1, 3], 2)
    retry = np.where(status >= 2, rng.poisson(0.7, size=n), 0)
    pii = np.where(rng.random(n) < cfg.pii_share, rng.integers(1, 3, size=n), 0)  # 1 email, 2 phone

    start_us = ts - np.round(duration * 1000).astype(np.int64)
    table = pa.table(
        {
            "row_idx": pa.array(np.arange(n, dtype=np.int64)),
            "event_id": _uuid4_array(rng, n),
            "run_id": _uuid4_array(rng, n),
            "agent_name": _decode(agent, cfg.agents),
            "agent_type": _decode(np.arange(n_a)[agent] % len(_AGENT_TYPES), _AGENT_TYPES),
            "task_type": _decode(task, cfg.task_types),
            "task_name": _decode(task, cfg.task_types),
            "verb": _decode(task % len(_VERBS), _VERBS),
            "noun": _decode((task * 5 + dom) % len(_NOUNS), _NOUNS),
            "complexity": _decode(cx, cfg.complexities),
            "domain": _decode(dom, cfg.domains),
            "ts": pa.array(ts.astype("datetime64[us]")),
            "start_ts": pa.array(start_us.astype("datetime64[us]")),
            "duration_ms": duration,
            "latency_ms": latency,
            "llm_latency_ms": llm,
            "status": _decode(status, ("success",) + _NON_SUCCESS),
            "severity": _decode(severity, ("info", "warning", "error", "critical")),
            "tokens_used": tokens,
            "cost_usd": cost,
            "quality_score": quality,
            "error_type": _decode(np.where(timeout, 4, error), _ERRORS + ("TimeoutError",)),
            "retry_count": retry.astype(np.int64),
            "model": _decode(model, [m[0] for m in _MODELS]),
            "provider": _decode(model, [m[1] for m in _MODELS]),
            "selection_propensity": pa.array(propensity, from_pandas=True),
            "client_id": rng.integers(1000, 99999, size=n),
            "workflow_no": rng.integers(1, 5000, size=n),
            "line_no": rng.integers(20, 400, size=n),
            "pii": pii.astype(np.int8),
        }
    )
    # Fields some callers leave out; drawn last, so the other columns do not depend on these shares.
    for column, share in (
        ("task_type", cfg.missing_task_type_share),
        ("quality_score", cfg.missing_quality_share),
    ):
        if share > 0:
            missing = pa.array(rng.random(n) < share)
            i = table.schema.get_field_index(column)
            col = table.column(i)
            table = table.set_column(i, column, pc.if_else(missing, pa.scalar(None, col.type), col))
    return table


def _typed_sql(cfg: SimulationConfig, source: str = "base") -> str:
    """SQL turning the raw unit columns into typed event columns (JSON-valued fields as JSON text)."""
    agents = ", ".join("'" + a.replace("'", "''") + "'" for a in cfg.agents)
    candidates = f"[{agents}]" if cfg.propensities else "NULL::VARCHAR[]"
    propensity = "round(selection_propensity, 6)" if cfg.propensities else "NULL::DOUBLE"
    ok = "status IN ('success', 'partial')"
    pii = (
        "CASE pii WHEN 1 THEN printf(' Contact: %s.%d@example.com', lower(agent_type), client_id) "
        "WHEN 2 THEN printf(' Call +1-555-%04d.', client_id % 10000) ELSE '' END"
    )
    message = (
        "CASE error_type "
        "WHEN 'ValueError' THEN printf('Invalid data format in field ''%s''', noun) "
        "WHEN 'RateLimitError' THEN printf('Rate limit exceeded for %s, retry after %d s', provider, line_no % 60) "
        "WHEN 'ToolError' THEN printf('Tool ''%s_lookup'' returned HTTP %d', noun, 500 + line_no % 4) "
        "WHEN 'KeyError' THEN printf('Missing key ''%s_id'' in tool response', noun) "
        "ELSE printf('Agent exceeded time budget of %d ms', 30000) END"
    )
    return f"""
    SELECT
      row_idx,
      event_id,
      run_id,
      agent_name,
      agent_type,
      CASE WHEN task_type IS NULL THEN task_name ELSE printf('%s_%s', verb, noun) END AS action_type,
      task_type,
      ts AS "timestamp",
      start_ts AS start_time,
      ts AS end_time,
      duration_ms,
      latency_ms,
      status,
      severity,
      llm_latency_ms,
      tokens_used,
      cost_usd,
      quality_score,
      to_json(struct_pack(
        task := printf('%s the %s %s for client %d.', verb, domain, noun, client_id) || {pii},
        task_type := task_type
      ))::VARCHAR AS input,
      CASE WHEN {ok} THEN to_json(struct_pack(
        result := printf('%s %s: %s', CASE status WHEN 'success' THEN 'Completed' ELSE 'Partially completed' END,
                         verb, noun) || CASE WHEN pii = 1 THEN {pii} ELSE '' END,
        confidence := quality_score
      ))::VARCHAR END AS output,
      CASE WHEN NOT {ok} THEN {message} END AS error_message,
      CASE WHEN NOT {ok} THEN error_type END AS error_type,
      CASE WHEN NOT {ok} THEN printf(
        'Traceback (most recent call last):%s  File "agents/%s.py", line %d, in execute%s%s: %s', chr(10),
        agent_name, line_no, chr(10), error_type, {message}) END AS stack_trace,
      CASE WHEN NOT {ok} THEN retry_count END AS retry_count,
      printf('workflow-%d', workflow_no) AS correlation_id,
      replace(task_name, '_', '-') || '-' || domain AS workflow_id,
      list_value(task_name, domain, complexity) AS tags,
      to_json(struct_pack(complexity := complexity, domain := domain))::VARCHAR AS context,
      to_json(struct_pack(model := model, provider := provider))::VARCHAR AS metadata,
      {propensity} AS selection_propensity,
      {candidates} AS candidate_agents,
      NULL::VARCHAR AS decision_id
    FROM {source}
    """


def _events_schema() -> pa.Schema:
    return pa.schema([OUTCOME_EVENT_SCHEMA.field(f.name) for f in EVENT_FIELDS])


_ISO = "'%Y-%m-%dT%H:%M:%S.%gZ'"


def _json_fields(cfg: SimulationConfig, ok: bool, kind: str | None = None) -> list[tuple[str, str]]:
    """(key, SQL expression) of one JSON line shape; `kind` injects one defect (a bad record)."""
    ts_shift = " + INTERVAL 3650 DAY" if kind == "future_timestamp" else ""
    fields: list[tuple[str, str]] = [
        ("event_id", "event_id" if kind is None else f"'{BAD_EVENT_ID_PREFIX}{kind}-' || event_id"),
        ("run_id", "run_id"),
        ("agent_name", "agent_name"),
        ("agent_type", "agent_type"),
        ("action_type", "action_type"),
        ("task_type", "task_type"),
        ("timestamp", f'strftime("timestamp"::TIMESTAMP{ts_shift}, {_ISO})'),
        ("start_time", f"strftime(start_time::TIMESTAMP{ts_shift}, {_ISO})"),
        ("end_time", f"strftime(end_time::TIMESTAMP{ts_shift}, {_ISO})"),
        ("duration_ms", "'fast'" if kind == "wrong_type" else "duration_ms"),
        ("latency_ms", "latency_ms"),
        ("status", "'exploded'" if kind == "unknown_status" else "status"),
        ("severity", "severity"),
        ("llm_latency_ms", "llm_latency_ms"),
        ("tokens_used", "tokens_used"),
        ("cost_usd", "cost_usd"),
        (
            "quality_score",
            "round(1.2 + coalesce(quality_score, 0.5), 3)" if kind == "out_of_range" else "quality_score",
        ),
        ("input", "input::JSON"),
    ]
    if ok:
        output = (
            f"to_json(struct_pack(result := repeat('x', {OVERSIZED_BYTES})))"
            if kind == OVERSIZED_KIND
            else "output::JSON"
        )
        fields.append(("output", output))
    else:
        fields += [
            ("error_message", "error_message"),
            ("error_type", "error_type"),
            ("stack_trace", "stack_trace"),
            ("retry_count", "retry_count"),
        ]
    fields += [
        ("correlation_id", "correlation_id"),
        ("workflow_id", "workflow_id"),
        ("tags", "tags"),
        ("context", "context::JSON"),
        ("metadata", "metadata::JSON"),
    ]
    if cfg.propensities:
        fields += [("selection_propensity", "selection_propensity"), ("candidate_agents", "candidate_agents")]
    if kind == "missing_required_field":
        fields = [f for f in fields if f[0] != "agent_name"]
    return fields


def _struct_json(cfg: SimulationConfig, ok: bool, kind: str | None) -> str:
    body = ", ".join(f'"{key}" := {expr}' for key, expr in _json_fields(cfg, ok, kind))
    return f"to_json(struct_pack({body}))"


def _lines_sql(cfg: SimulationConfig, source: str, kind: str | None = None) -> str:
    """One JSON line per raw row of `source`, in row order; `kind` injects one defect into every line."""
    if kind == OVERSIZED_KIND:  # the oversized payload sits in `output`: the ok shape for every row
        line = _struct_json(cfg, True, kind)
    else:
        line = (
            f"CASE WHEN status IN ('success', 'partial') THEN {_struct_json(cfg, True, kind)} "
            f"ELSE {_struct_json(cfg, False, kind)} END"
        )
    if kind == "malformed_json":
        line = f"left({line}, length({line}) // 2)"
    return f"WITH typed AS ({_typed_sql(cfg, source)}) SELECT row_idx, {line} || chr(10) AS line FROM typed"


def _ordered_lines(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Array:
    table = con.sql(sql).to_arrow_table()
    idx = table.column("row_idx").to_numpy()
    lines = table.column("line").combine_chunks()
    if len(idx) and not (np.diff(idx) > 0).all():
        lines = lines.take(pa.array(np.argsort(idx, kind="stable"), pa.int64()))
    return lines


@dataclass
class _UnitOutput:
    n: int  # valid, unique events
    typed: pa.Table | None  # the valid events, typed (only when asked for)
    lines: pa.Array  # all JSONL lines in delivery order (valid, duplicates, bad records)
    duplicates: int
    bad: dict[str, int]


def _generate_unit(
    con: duckdb.DuckDBPyConnection,
    cfg: SimulationConfig,
    truth: SimulationTruth,
    unit: _Unit,
    now_us: int,
    with_lines: bool,
    first_unit: bool,
) -> _UnitOutput:
    rng = np.random.default_rng([cfg.seed, unit.day, unit.part])
    base = _base_columns(cfg, truth, unit, rng, now_us)
    n = unit.n
    if not with_lines or n == 0:
        con.register("base", base)
        typed = con.sql(_typed_sql(cfg) + " ORDER BY row_idx").to_arrow_table()
        con.unregister("base")
        return _UnitOutput(
            n, typed.drop_columns(["row_idx"]).cast(_events_schema()), pa.array([], pa.string()), 0, {}
        )

    con.register("base", base)
    good_lines = _ordered_lines(con, _lines_sql(cfg, "base"))
    con.unregister("base")

    # Re-deliveries: verbatim copies a little later in the stream.
    n_dup = min(int(round(cfg.duplicate_share * n)), n)
    dup_src = np.sort(rng.choice(n, size=n_dup, replace=False)) if n_dup else np.zeros(0, np.int64)
    dup_lines = good_lines.take(pa.array(dup_src, pa.int64()))
    dup_pos = dup_src + rng.uniform(1.0, 200.0, size=len(dup_src))

    # Bad records: each carries exactly one defect of a known kind.
    n_bad = int(round(cfg.malformed_share * n))
    kinds: list[str] = []
    if n_bad:
        n_over = min(cfg.oversized_records, n_bad) if first_unit else 0
        start = int(rng.integers(len(BAD_RECORD_KINDS)))
        kinds = [OVERSIZED_KIND] * n_over + [
            BAD_RECORD_KINDS[(start + i) % len(BAD_RECORD_KINDS)] for i in range(n_bad - n_over)
        ]
    bad_arrays, bad_counts = [], {}
    if kinds:
        src = rng.choice(n, size=len(kinds), replace=len(kinds) > n)
        kind_arr = np.array(kinds)
        for kind in dict.fromkeys(kinds):
            rows = src[kind_arr == kind]
            sub = base.take(pa.array(rows, pa.int64())).set_column(
                0, "row_idx", pa.array(np.arange(len(rows)), pa.int64())
            )
            con.register("bad_src", sub)
            bad_arrays.append(_ordered_lines(con, _lines_sql(cfg, "bad_src", kind)))
            con.unregister("bad_src")
            bad_counts[kind] = len(rows)
    bad_lines = pa.concat_arrays(bad_arrays) if bad_arrays else pa.array([], pa.string())
    bad_pos = rng.uniform(0.0, n, size=len(bad_lines))

    all_lines = pa.concat_arrays([good_lines, dup_lines, bad_lines])
    positions = np.concatenate([np.arange(n, dtype=float), dup_pos, bad_pos])
    order = np.argsort(positions, kind="stable")
    return _UnitOutput(n, None, all_lines.take(pa.array(order, pa.int64())), len(dup_src), bad_counts)


def _iter_units(cfg: SimulationConfig, with_lines: bool) -> Iterator[tuple[_Unit, _UnitOutput]]:
    truth = SimulationTruth(cfg)
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        for i, unit in enumerate(_units(cfg)):
            yield unit, _generate_unit(con, cfg, truth, unit, now_us, with_lines, first_unit=(i == 0))
    finally:
        con.close()


def _with_lineage(table: pa.Table, first_record: int) -> pa.Table:
    """Add the pipeline's lineage columns: source_file='simulated', record_number, received_at = event time."""
    n = table.num_rows
    for f in LINEAGE_FIELDS:
        if f.name == "source_file":
            col = pa.array(["simulated"] * n, pa.string())
        elif f.name == "record_number":
            col = pa.array(np.arange(first_record, first_record + n, dtype=np.int64))
        else:
            col = table.column("timestamp")
        table = table.append_column(f, col)
    return table


def iter_day_tables(config: SimulationConfig, lineage: bool = False) -> Iterator[tuple[date, pa.Table]]:
    """The valid, unique events of each day in turn, as (day, table); memory holds one day at a time.

    With `lineage=True` record numbers run on across days, so the tables concatenate to `generate_table`.
    """
    parts: list[pa.Table] = []
    day, records = 0, 0

    def flush() -> tuple[date, pa.Table]:
        nonlocal records
        table = pa.concat_tables(parts) if parts else _events_schema().empty_table()
        if lineage:
            table = _with_lineage(table, records)
        records += table.num_rows
        parts.clear()
        return config.day_date(day), table

    for unit, out in _iter_units(config, with_lines=False):
        if unit.day != day:
            yield flush()
            day = unit.day
        parts.append(out.typed)
    yield flush()


def generate_table(config: SimulationConfig, lineage: bool = False) -> pa.Table:
    """All valid, unique events of `config` as one Arrow table with the event columns of OUTCOME_EVENT_SCHEMA.

    With `lineage=True` the pipeline's lineage columns are added (source_file='simulated', record_number,
    received_at = the event time), so the table can be written directly as lake Parquet fixtures.
    """
    return pa.concat_tables([table for _, table in iter_day_tables(config, lineage)])


def iter_event_lines(config: SimulationConfig) -> Iterator[tuple[pa.StringArray, _UnitOutput]]:
    """Yield the JSONL lines (each ending in a newline) of each generation unit, in delivery order."""
    for _, out in _iter_units(config, with_lines=True):
        yield out.lines, out
