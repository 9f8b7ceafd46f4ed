"""A small dbt-like runner for the plain SQL models in `dbt_like_sql/`.

A model is one `.sql` file; its name is the file stem (unique across the tree). Inside a model:

- `{{ ref('other_model') }}` refers to another model (it becomes a dependency and renders as `"other_model"`);
- `{{ source('outcome_events') }}` refers to a table or view that already exists on the connection
  (e.g. a lake view from `warehouse.lake_connection`); it renders as `"outcome_events"` and is not a model;
- `{{ var('name') }}` / `{{ var('name', default) }}` inserts a parameter as a SQL literal (strings quoted,
  numbers as numbers, None as NULL, lists as DuckDB lists, dates/datetimes as DATE/TIMESTAMPTZ literals);
- a header comment `-- materialized: table` (or `view`, the default) chooses how the model is created.

`.sql` files under `macros/` are not models: they define DuckDB macros (`create or replace macro ...;`) that
`run` creates on the connection before any model, so a rule several models share is written once.

Rendering never adds or removes lines, so an error position reported by DuckDB (`LINE n:`) maps straight
back to the line of the model file; `SqlModelError` names the model, the file and that line.
"""

from __future__ import annotations

import ast
import datetime as dt
import graphlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

SQL_ROOT: Path = Path(__file__).resolve().parents[2] / "dbt_like_sql"  # shipped inside the package

MATERIALIZATIONS = ("view", "table")
MACROS_DIR = "macros"

_JINJA = re.compile(r"\{\{\s*(?P<fn>ref|source|var)\s*\((?P<args>[^)]*)\)\s*\}\}")
_MATERIALIZED = re.compile(r"^\s*--\s*materialized\s*:\s*(?P<kind>\w+)\s*$", re.IGNORECASE | re.MULTILINE)
_DUCKDB_LINE = re.compile(r"LINE (\d+):")
_MISSING = object()


class SqlProjectError(Exception):
    """A problem with the project itself: duplicate names, unknown refs, cycles, bad templates."""


class SqlModelError(SqlProjectError):
    """A model failed to render or run; names the model, its file and (when known) the line."""

    def __init__(self, model: str, path: Path, line: int | None, message: str):
        self.model = model
        self.path = Path(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"model '{model}' ({where}): {message}")


@dataclass(frozen=True)
class SqlModel:
    name: str
    path: Path
    sql: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    variables: tuple[str, ...]
    materialized: str = "view"

    def line_of(self, offset: int) -> int:
        return self.sql.count("\n", 0, offset) + 1


@dataclass
class ModelRun:
    name: str
    materialized: str
    sql: str
    rows: int | None = None


def _parse_args(model_name: str, path: Path, line: int, args: str) -> list[Any]:
    text = args.strip()
    if not text:
        return []
    # Accept Jinja's none/true/false spellings.
    normalized = re.sub(r"\bnone\b", "None", text)
    normalized = re.sub(r"\btrue\b", "True", normalized)
    normalized = re.sub(r"\bfalse\b", "False", normalized)
    try:
        value = ast.literal_eval(f"({normalized},)")
    except (ValueError, SyntaxError) as exc:
        raise SqlModelError(
            model_name, path, line, f"cannot parse template arguments ({text}): {exc}"
        ) from None
    return list(value)


def sql_value(value: Any) -> str:
    """A Python value as a DuckDB literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value != value:
            return "NULL"
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sql_value(v) for v in value) + "]"
    if hasattr(value, "isoformat"):  # pandas Timestamp and friends
        return sql_value(value.to_pydatetime() if hasattr(value, "to_pydatetime") else value.isoformat())
    return "'" + str(value).replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class SqlProject:
    root: Path
    models: dict[str, SqlModel] = field(default_factory=dict)
    macro_files: tuple[Path, ...] = ()

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, root: str | Path | None = None) -> SqlProject:
        root = Path(root) if root is not None else SQL_ROOT
        if not root.is_dir():
            raise SqlProjectError(f"SQL project directory not found: {root}")
        models: dict[str, SqlModel] = {}
        macro_files: list[Path] = []
        for path in sorted(root.rglob("*.sql")):
            if path.relative_to(root).parts[0] == MACROS_DIR:
                macro_files.append(path)
                continue
            model = cls._parse(path)
            if model.name in models:
                raise SqlProjectError(
                    f"duplicate model name '{model.name}': {models[model.name].path} and {path}"
                )
            models[model.name] = model
        project = cls(root=root, models=models, macro_files=tuple(macro_files))
        project._check_refs()
        project._order(list(models))  # raises on cycles
        return project

    @staticmethod
    def _parse(path: Path) -> SqlModel:
        sql = path.read_text(encoding="utf-8")
        name = path.stem
        refs: list[str] = []
        sources: list[str] = []
        variables: list[str] = []
        for match in _JINJA.finditer(sql):
            line = sql.count("\n", 0, match.start()) + 1
            args = _parse_args(name, path, line, match.group("args"))
            fn = match.group("fn")
            if not args or not isinstance(args[0], str):
                raise SqlModelError(name, path, line, f"{fn}() needs a name as its first argument")
            if fn == "ref":
                refs.append(args[0])
            elif fn == "source":
                sources.append(args[0])
            else:
                variables.append(args[0])
        kind_match = _MATERIALIZED.search(sql)
        kind = kind_match.group("kind").lower() if kind_match else "view"
        if kind not in MATERIALIZATIONS:
            line = sql.count("\n", 0, kind_match.start()) + 1 if kind_match else None
            raise SqlModelError(
                name, path, line, f"unknown materialization '{kind}' (use one of {MATERIALIZATIONS})"
            )
        return SqlModel(
            name=name,
            path=path,
            sql=sql,
            refs=tuple(dict.fromkeys(refs)),
            sources=tuple(dict.fromkeys(sources)),
            variables=tuple(dict.fromkeys(variables)),
            materialized=kind,
        )

    def _check_refs(self) -> None:
        for model in self.models.values():
            for ref in model.refs:
                if ref not in self.models:
                    match = re.search(r"ref\s*\(\s*['\"]" + re.escape(ref) + r"['\"]", model.sql)
                    line = model.line_of(match.start()) if match else None
                    raise SqlModelError(model.name, model.path, line, f"ref to unknown model '{ref}'")

    # ---------------------------------------------------------------- graph
    def _order(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        sorter = graphlib.TopologicalSorter(
            {n: [r for r in self.models[n].refs if r in names] for n in names}
        )
        try:
            # static_order is deterministic for a given insertion order; sort for stability.
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = exc.args[1] if len(exc.args) > 1 else []
            raise SqlProjectError("dependency cycle between models: " + " -> ".join(cycle)) from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        return order

    def _require(self, name: str) -> SqlModel:
        if name not in self.models:
            raise SqlProjectError(f"unknown model '{name}' (known: {', '.join(sorted(self.models))})")
        return self.models[name]

    def upstream(self, name: str, include_self: bool = True) -> list[str]:
        """`name` and every model it depends on, transitively, in run order."""
        self._require(name)
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.models[current].refs)
        order = self._order(seen)
        return order if include_self else [n for n in order if n != name]

    def downstream(self, name: str) -> list[str]:
        """Models that depend on `name`, transitively, in run order (without `name`)."""
        self._require(name)
        found: set[str] = set()
        frontier = {name}
        while frontier:
            nxt = {m.name for m in self.models.values() if set(m.refs) & frontier} - found
            found |= nxt
            frontier = nxt
        return self._order(found)

    def order(self, select: Iterable[str] | None = None) -> list[str]:
        """Run order of the selected models plus their upstream (all models when `select` is None)."""
        if select is None:
            return self._order(self.models)
        wanted: set[str] = set()
        for name in select:
            wanted.update(self.upstream(name))
        return self._order(wanted)

    def sources(self, select: Iterable[str] | None = None) -> list[str]:
        """Tables/views the selected models read with source() (they must exist on the connection)."""
        return sorted({s for n in self.order(select) for s in self.models[n].sources})

    # ---------------------------------------------------------------- rendering
    def render(self, name: str, vars: Mapping[str, Any] | None = None) -> str:
        """The model's SQL with refs, sources and vars substituted; line numbers are preserved."""
        model = self._require(name)
        values = dict(vars or {})

        def substitute(match: re.Match) -> str:
            line = model.line_of(match.start())
            fn = match.group("fn")
            args = _parse_args(model.name, model.path, line, match.group("args"))
            if fn in ("ref", "source"):
                return _quote_ident(args[0])
            key = args[0]
            if key in values:
                return sql_value(values[key])
            if len(args) > 1:
                return sql_value(args[1])
            raise SqlModelError(model.name, model.path, line, f"var '{key}' has no value and no default")

        return _JINJA.sub(substitute, model.sql).rstrip().rstrip(";").rstrip()

    # ---------------------------------------------------------------- running
    def run(
        self,
        con: duckdb.DuckDBPyConnection,
        select: Iterable[str] | None = None,
        vars: Mapping[str, Any] | None = None,
        materialized: Mapping[str, str] | None = None,
        exclude: Iterable[str] = (),
    ) -> list[ModelRun]:
        """Create every selected model (and its upstream) on `con`, in dependency order.

        `materialized` overrides a model's header (e.g. {"stg_outcome_events": "table"}).
        `exclude` names models that are not run because a relation of that name already exists on `con`
        (e.g. daily aggregates read back from the lake); their own upstream is skipped too unless another
        selected model needs it.
        Each model replaces any table or view of the same name. Returns what ran, in order.
        """
        overrides = dict(materialized or {})
        skipped = set(exclude)
        for name in skipped:
            self._require(name)
        if select is None:
            wanted = [n for n in self.models if n not in skipped]
        else:
            wanted = list(select)
        needed: set[str] = set()
        stack = [n for n in wanted if n not in skipped]
        while stack:
            current = stack.pop()
            if current in needed or current in skipped:
                continue
            self._require(current)
            needed.add(current)
            stack.extend(self.models[current].refs)
        self._create_macros(con)
        runs: list[ModelRun] = []
        for name in self._order(needed):
            model = self.models[name]
            kind = overrides.get(name, model.materialized)
            if kind not in MATERIALIZATIONS:
                raise SqlProjectError(f"unknown materialization '{kind}' for model '{name}'")
            body = self.render(name, vars)
            # The statement starts on a line of its own, so DuckDB's LINE n is file line n - 1.
            statement = f"CREATE {kind.upper()} {_quote_ident(name)} AS\n{body}"
            self._drop_existing(con, name)
            try:
                con.execute(statement).fetchall()
            except duckdb.Error as exc:
                message = str(exc)
                found = _DUCKDB_LINE.search(message)
                line = int(found.group(1)) - 1 if found else None
                if line is not None and line < 1:
                    line = 1
                if line is not None:
                    message = _DUCKDB_LINE.sub(f"LINE {line}:", message, count=1)
                raise SqlModelError(name, model.path, line, message) from exc
            rows = None
            if kind == "table":
                rows = con.execute(f"SELECT count(*) FROM {_quote_ident(name)}").fetchall()[0][0]
            runs.append(ModelRun(name=name, materialized=kind, sql=body, rows=rows))
        return runs

    def _create_macros(self, con: duckdb.DuckDBPyConnection) -> None:
        for path in self.macro_files:
            try:
                con.execute(path.read_text(encoding="utf-8")).fetchall()
            except duckdb.Error as exc:
                raise SqlProjectError(f"macro file {path}: {exc}") from exc

    @staticmethod
    def _drop_existing(con: duckdb.DuckDBPyConnection, name: str) -> None:
        row = con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ?",
            [name],
        ).fetchall()
        if not row:
            return
        kind = "VIEW" if row[0][0] == "VIEW" else "TABLE"
        con.execute(f"DROP {kind} {_quote_ident(name)}").fetchall()

    def query(self, con: duckdb.DuckDBPyConnection, name: str, vars: Mapping[str, Any] | None = None):
        """Run `name` and its upstream, then return the model's rows as an Arrow table."""
        self.run(con, select=[name], vars=vars)
        return con.sql(f"SELECT * FROM {_quote_ident(name)}").to_arrow_table()
