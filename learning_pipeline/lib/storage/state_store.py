"""The small mutable state that the pipeline and the API share (alerts, loop settings, approvals, stage changes,
learning cycles), in a store that takes concurrent readers and writers.

- PostgreSQL when `$LEARNING_PIPELINE_STATE_URL` is set (e.g. `postgresql://user:pass@host:5432/db`; libpq
  parameters work, e.g. `?options=-csearch_path%3Dlearning` to keep the tables in schema `learning`). One
  schema holds one deployment's state. Connections come from a bounded per-process pool.
- Otherwise SQLite in WAL mode at `<data_dir>/autonomy/state.sqlite`: readers never wait for writers.

Writers take turns per table: a write transaction holds a lock named after its table (PostgreSQL: a session
advisory lock; SQLite: a thread lock plus an fcntl lock on `state.sqlite.lock`, so processes queue too), which
makes read-check-write sequences such as de-duplication or "acknowledge once" safe, and lets work registered
with `Tx.after_commit` (e.g. publishing a lake snapshot) run after the commit in commit order.

SQL given to `Tx.execute` uses `?` placeholders and must not contain a literal `?` or `%`.
Timestamps are stored as TIMESTAMPTZ (PostgreSQL) or as ISO-8601 UTC text with microseconds (SQLite, which
compares them correctly as text); booleans as BOOLEAN or 0/1. `TableSpec.frame` turns rows back into a typed
DataFrame either way.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from learning_pipeline.lib.redact import redact_uri
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic

log = logging.getLogger(__name__)

STATE_URL_ENV = "LEARNING_PIPELINE_STATE_URL"
POOL_SIZE_ENV = "LEARNING_PIPELINE_STATE_POOL_SIZE"
LOCK_TIMEOUT_SECONDS = 60.0
SNAPSHOT = "data.parquet"  # a table's lake snapshot, see `publish`


class StateStoreBusy(TimeoutError):
    """A writer waited longer than its timeout for a table's writer lock."""


_TYPES = {
    # logical type: (SQLite, PostgreSQL, pandas dtype, arrow type)
    "text": ("TEXT", "TEXT", object, pa.string()),
    "int": ("INTEGER", "BIGINT", "Int64", pa.int64()),
    "float": ("REAL", "DOUBLE PRECISION", "float64", pa.float64()),
    "bool": ("INTEGER", "BOOLEAN", "boolean", pa.bool_()),
    "timestamp": ("TEXT", "TIMESTAMPTZ", "datetime64[us, UTC]", pa.timestamp("us", tz="UTC")),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of _TYPES
    nullable: bool = True
    primary_key: bool = False
    default: str | None = None  # an SQL literal both dialects accept, e.g. "false"

    def __post_init__(self):
        if self.type not in _TYPES:
            raise ValueError(f"column {self.name}: type must be one of {sorted(_TYPES)}, got {self.type!r}")


_COLUMN = re.compile(r"(\w+) (\w+)( primary key)?( not null)?(?: default (\S+))?", re.IGNORECASE)


@dataclass(frozen=True)
class TableSpec:
    """A table's columns (logical types) and indexes, and how its rows become DataFrames and Arrow tables."""

    name: str
    columns: tuple[Column, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    order_by: str = ""  # how `select` lists the rows by default, e.g. "created_at, id"

    @classmethod
    def parse(
        cls, name: str, columns: str, indexes: tuple[tuple[str, ...], ...] = (), order_by: str = ""
    ) -> TableSpec:
        """A spec from column definitions written as in SQL with the logical types, comma-separated, e.g.
        `"id text primary key, version int not null, acknowledged bool not null default false"`."""
        parsed = []
        for definition in columns.split(","):
            found = _COLUMN.fullmatch(definition.strip())
            if found is None:
                raise ValueError(f"table {name}: cannot read the column definition {definition.strip()!r}")
            column, kind, key, not_null, default = found.groups()
            parsed.append(Column(column, kind, not not_null, bool(key), default))
        return cls(name, tuple(parsed), indexes, order_by)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _TYPES[c.type][3], nullable=c.nullable) for c in self.columns])

    def ddl(self, dialect: str) -> list[str]:
        index = 0 if dialect == "sqlite" else 1
        cols = []
        for c in self.columns:
            sql_type = _TYPES[c.type][index]
            if dialect == "sqlite" and c.type == "bool" and c.default is not None:
                default = {"false": "0", "true": "1"}.get(c.default, c.default)
            else:
                default = c.default
            cols.append(
                f"{c.name} {sql_type}"
                + (" PRIMARY KEY" if c.primary_key else "")
                + ("" if c.nullable or c.primary_key else " NOT NULL")
                + (f" DEFAULT {default}" if default is not None else "")
            )
        out = [f"CREATE TABLE IF NOT EXISTS {self.name} ({', '.join(cols)})"]
        for columns in self.indexes:
            out.append(
                f"CREATE INDEX IF NOT EXISTS {self.name}_{'_'.join(columns)} ON {self.name} ({', '.join(columns)})"
            )
        return out

    def insert(self, tx: Tx, rows: Iterable[dict]) -> None:
        """Insert rows (dicts by column name, a missing column is NULL); a row whose key exists is skipped."""
        sql = (
            f"INSERT INTO {self.name} ({', '.join(self.names)}) VALUES ({', '.join('?' * len(self.names))}) "
            "ON CONFLICT DO NOTHING"
        )
        for row in rows:
            tx.execute(sql, [row.get(c) for c in self.names])

    def select(self, tx: Tx, where: str = "", params: Sequence[Any] = (), order_by: str = "") -> pd.DataFrame:
        """Rows as a typed DataFrame; `where` is SQL after the table name (e.g. " WHERE id = ?")."""
        order_by = order_by or self.order_by
        sql = f"SELECT {', '.join(self.names)} FROM {self.name}{where}" + (
            f" ORDER BY {order_by}" if order_by else ""
        )
        return self.frame(tx.execute(sql, params).fetchall())

    def frame(self, rows: Sequence[Sequence[Any]], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows (in `columns` order, default: all columns) as a DataFrame with one dtype per logical type."""
        columns = list(columns or self.names)
        raw = pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)
        types = {c.name: c.type for c in self.columns}
        out = {}
        for name in columns:
            kind = types[name]
            values = raw[name]
            if kind == "timestamp":
                out[name] = pd.to_datetime(values, utc=True, format="ISO8601").astype(_TYPES[kind][2])
            elif kind == "bool":
                out[name] = values.map(lambda v: None if v is None else bool(v)).astype("boolean")
            else:
                out[name] = values.astype(_TYPES[kind][2]) if kind != "text" else values
        return pd.DataFrame(out, columns=columns)

    def arrow(self, frame: pd.DataFrame) -> pa.Table:
        arrays = []
        for c in self.columns:
            values = frame[c.name]
            if c.type == "timestamp":  # UTC instants as naive datetime64: arrow reads them as UTC
                values = values.dt.tz_convert(None).to_numpy()
            arrays.append(pa.array(values, type=_TYPES[c.type][3], from_pandas=True))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _utc_text(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _param(value: Any, dialect: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if dialect == "sqlite":
        if isinstance(value, datetime):
            return _utc_text(value)
        if isinstance(value, bool):
            return int(value)
    return value


class Tx:
    """One connection inside `StateStore.read()` or `StateStore.write()`."""

    def __init__(self, cursor, dialect: str):
        self._cursor = cursor
        self.dialect = dialect
        self._after: list[Callable[[Tx], None]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        self._cursor.execute(sql, [_param(p, self.dialect) for p in params])
        return self

    def fetchall(self) -> list[tuple]:
        return list(self._cursor.fetchall())

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    @property
    def columns(self) -> list[str]:
        return [d[0] for d in self._cursor.description or ()]

    def after_commit(self, work: Callable[[Tx], None]) -> None:
        """Run `work(tx)` after this write commits, while the table's writer lock is still held."""
        self._after.append(work)


@contextmanager
def _transaction(tx: Tx, begin: str, alive: Callable[[], bool] = lambda: True) -> Iterator[Tx]:
    """`begin` ... COMMIT (ROLLBACK on error while the connection is `alive`), then the after-commit work."""
    tx._cursor.execute(begin)
    try:
        yield tx
    except BaseException:
        if alive():
            tx._cursor.execute("ROLLBACK")
        raise
    tx._cursor.execute("COMMIT")
    for work in tx._after:
        work(tx)


class StateStore:
    dialect: str

    def describe(self) -> str:
        """Where the state lives, credentials redacted."""
        raise NotImplementedError

    @contextmanager
    def read(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield

    @contextmanager
    def write(self, table: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[Tx]:
        """A transaction that holds `table`'s writer lock (waiting at most `timeout` seconds for it, then
        StateStoreBusy); committed on success, rolled back on error."""
        raise NotImplementedError
        yield

    def _busy(self, table: str, timeout: float) -> StateStoreBusy:
        return StateStoreBusy(
            f"waited {timeout:g} s for the writer lock of table {table} in {self.describe()}: another writer "
            "holds it (a hung process?)"
        )

    def ensure(self, spec: TableSpec, lake: LakePaths | None = None) -> None:
        """Create the table and its indexes once per store. With `lake`, the rows of the table's former home,
        append-only Parquet batches in `lake/<name>/`, are imported first (once: the batches then move to
        `<data dir>/autonomy/imported/<name>/`, kept, and the lake snapshot is published, see `publish`)."""
        key = (spec.name, str(lake.root) if lake is not None else None)
        if key in self._ensured:
            return
        with self._ensure_lock:
            if key in self._ensured:
                return
            with self.write(spec.name) as tx:
                for statement in spec.ddl(self.dialect):
                    tx.execute(statement)
                if lake is not None:
                    _import_lake_batches(tx, spec, lake)
            self._ensured.add(key)

    def close(self) -> None:
        pass

    def __init__(self):
        self._ensured: set[tuple[str, str | None]] = set()
        self._ensure_lock = threading.Lock()


class SqliteStateStore(StateStore):
    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout_seconds: float = 60.0):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_seconds = busy_timeout_seconds
        self._thread_lock = threading.Lock()
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(
            self.path, timeout=self.busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        con.execute("PRAGMA synchronous=FULL")  # a committed change survives a power loss
        return con

    @contextmanager
    def read(self) -> Iterator[Tx]:
        con = self._connect()
        try:
            yield Tx(con.cursor(), self.dialect)
        finally:
            con.close()

    @contextmanager
    def _locked(self, table: str, timeout: float) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):  # threads of this process queue here
            raise self._busy(table, timeout)
        try:
            with open(self.path.with_name(self.path.name + ".lock"), "a+") as handle:
                delay = 0.002
                while True:  # one thread per process polls for the lock shared with other processes
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise self._busy(table, timeout) from None
                        time.sleep(delay)
                        delay = min(delay * 2, 0.05)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @contextmanager
    def write(self, table: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[Tx]:
        # one lock for every table: SQLite has one writer per file anyway
        with self._locked(table, timeout):
            con = self._connect()
            try:
                with _transaction(Tx(con.cursor(), self.dialect), "BEGIN IMMEDIATE") as tx:
                    yield tx
            finally:
                con.close()


class PostgresStateStore(StateStore):
    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 8):
        super().__init__()
        import psycopg2.pool

        self.url = url
        dsn = url.replace("postgresql+psycopg2://", "postgresql://", 1)
        self._pool = psycopg2.pool.ThreadedConnectionPool(0, pool_size, dsn=dsn, connect_timeout=10)
        self._slots = threading.BoundedSemaphore(pool_size)  # wait for a connection instead of failing
        # a process's writers of one table queue here, not on pooled connections: readers always find one
        self._table_locks: dict[str, threading.Lock] = {}
        self._table_locks_guard = threading.Lock()

    def describe(self) -> str:
        return redact_uri(self.url)

    @contextmanager
    def _connection(self):
        import psycopg2

        with self._slots:
            con = self._pool.getconn()
            broken = False
            try:
                con.autocommit = True
                yield con
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True  # never hand a dead connection to the next caller
                raise
            finally:
                self._pool.putconn(con, close=broken or bool(con.closed))

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._connection() as con, con.cursor() as cur:
            yield Tx(cur, self.dialect)

    @contextmanager
    def write(self, table: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[Tx]:
        import psycopg2.errors

        key = f"learning_pipeline.state.{table}"
        deadline = time.monotonic() + timeout
        with self._table_locks_guard:
            local = self._table_locks.setdefault(table, threading.Lock())
        if not local.acquire(timeout=timeout):
            raise self._busy(table, timeout)
        try:
            with self._connection() as con, con.cursor() as cur:
                left_ms = max(1, int((deadline - time.monotonic()) * 1000))
                cur.execute("SELECT set_config('lock_timeout', %s, false)", [f"{left_ms}ms"])
                try:  # writers of all processes queue on the advisory lock in arrival order
                    cur.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
                except psycopg2.errors.LockNotAvailable:
                    raise self._busy(table, timeout) from None
                finally:
                    cur.execute("SELECT set_config('lock_timeout', '0', false)")
                try:
                    with _transaction(Tx(cur, self.dialect), "BEGIN", lambda: not con.closed) as tx:
                        yield tx
                finally:
                    if not con.closed:
                        cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])
        finally:
            local.release()

    def close(self) -> None:
        self._pool.closeall()


def publish(tx: Tx, spec: TableSpec, lake: LakePaths) -> None:
    """The table as the lake snapshot `lake/<name>/data.parquet`, a view of the warehouse like any lake table.
    Meant for `Tx.after_commit`: written while the writer still holds the table, so snapshots never go back in
    time. A failure to write it is logged; the next change writes it again."""
    try:
        write_parquet_atomic(lake.table(spec.name) / SNAPSHOT, spec.arrow(spec.select(tx)))
    except OSError as error:
        log.warning("could not publish the %s lake snapshot: %s", spec.name, error)


def _import_lake_batches(tx: Tx, spec: TableSpec, lake: LakePaths) -> None:
    """Rows of the Parquet batches in `lake/<name>/` (the table's home before the state store) into the table,
    in the caller's write transaction; after the commit the batches move aside and the snapshot replaces them.
    Rows are keyed by id, so an import interrupted before the move is repeated without doubles."""
    import duckdb

    directory = lake.table(spec.name)
    batches = (
        sorted(p for p in directory.glob("*.parquet") if p.name != SNAPSHOT) if directory.exists() else []
    )
    if not batches:
        return
    with duckdb.connect() as con:
        found = con.execute(
            "SELECT * FROM read_parquet(?, union_by_name = true)", [[str(p) for p in batches]]
        )
        names = [d[0] for d in found.description]
        rows = [dict(zip(names, row, strict=True)) for row in found.fetchall()]
    spec.insert(tx, rows)
    aside = lake.root / "autonomy" / "imported" / spec.name

    def move_aside(tx: Tx) -> None:
        aside.mkdir(parents=True, exist_ok=True)
        for batch in batches:
            os.replace(batch, aside / batch.name)
        publish(tx, spec, lake)
        log.info(
            "imported %d rows of %s from %d Parquet batches (moved to %s)",
            len(rows),
            spec.name,
            len(batches),
            aside,
        )

    tx.after_commit(move_aside)


_STORES: dict[tuple[int, str], StateStore] = {}
_STORES_LOCK = threading.Lock()


def state_url() -> str | None:
    return os.environ.get(STATE_URL_ENV) or None


def sqlite_path(paths: LakePaths) -> Path:
    return paths.root / "autonomy" / "state.sqlite"


def open_state_store(paths: LakePaths, url: str | None = None) -> StateStore:
    """The store for this data directory: PostgreSQL if `url` (default `$LEARNING_PIPELINE_STATE_URL`) is
    set, else SQLite under the data directory. One shared instance per process and location."""
    url = url if url is not None else state_url()
    if url and not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        raise ValueError(
            f"{STATE_URL_ENV} must be a postgresql:// URL (unset it for the local SQLite store), "
            f"got {redact_uri(url)}"
        )
    location = url or str(sqlite_path(paths))
    key = (os.getpid(), location)  # connections and locks are never shared across a fork
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            if url:
                store = PostgresStateStore(url, pool_size=int(os.environ.get(POOL_SIZE_ENV, "8")))
            else:
                store = SqliteStateStore(sqlite_path(paths))
            _STORES[key] = store
        return store


def close_state_stores() -> None:
    """Close and forget every store this process opened (their pooled connections)."""
    with _STORES_LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()
