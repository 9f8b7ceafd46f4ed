"""The dbt-like SQL runner: refs, vars, ordering, cycles, upstream subsets, errors that name model and line."""

import duckdb
import pytest

from learning_pipeline.lib.storage.sql_runner import SQL_ROOT, SqlModelError, SqlProject, SqlProjectError


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project_dir(tmp_path):
    write(tmp_path, "staging/stg_numbers.sql", "select range as n from range({{ var('n', 5) }})\n")
    write(
        tmp_path,
        "marts/evens.sql",
        "-- materialized: table\nselect n from {{ ref('stg_numbers') }} where n % 2 = 0\n",
    )
    write(
        tmp_path,
        "marts/summary.sql",
        "select count(*) as evens, {{ var('label') }} as label,\n"
        "  (select max(n) from {{ ref( 'stg_numbers' ) }}) as top\n"
        'from {{ref("evens")}}\n',
    )
    write(tmp_path, "marts/unrelated.sql", "select 1 as one")
    return tmp_path


def test_load_order_and_upstream(project_dir):
    project = SqlProject.load(project_dir)
    assert set(project.models) == {"stg_numbers", "evens", "summary", "unrelated"}
    order = project.order()
    assert order.index("stg_numbers") < order.index("evens") < order.index("summary")
    assert project.upstream("summary") == ["stg_numbers", "evens", "summary"]
    assert project.downstream("stg_numbers") == ["evens", "summary"]
    assert project.models["evens"].materialized == "table"
    assert project.models["summary"].refs == ("stg_numbers", "evens")


def test_run_subset_with_vars(project_dir):
    project = SqlProject.load(project_dir)
    con = duckdb.connect()
    runs = project.run(con, select=["summary"], vars={"n": 10, "label": "it's"})
    assert [r.name for r in runs] == ["stg_numbers", "evens", "summary"]
    assert runs[1].rows == 5
    assert con.execute("SELECT evens, label, top FROM summary").fetchone() == (5, "it's", 9)
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    assert kinds == {"stg_numbers": "VIEW", "evens": "BASE TABLE", "summary": "VIEW"}
    # Re-running replaces existing relations, also when a view becomes a table.
    project.run(con, select=["summary"], vars={"n": 4, "label": "x"}, materialized={"summary": "table"})
    assert con.execute("SELECT evens, top FROM summary").fetchone() == (2, 3)


def test_exclude_uses_existing_relation(project_dir):
    project = SqlProject.load(project_dir)
    con = duckdb.connect()
    con.execute("CREATE TABLE evens AS SELECT 100 AS n")
    con.execute("CREATE VIEW stg_numbers AS SELECT 7 AS n")
    runs = project.run(con, select=["summary"], vars={"label": "y"}, exclude=["evens"])
    assert [r.name for r in runs] == ["stg_numbers", "summary"]
    assert con.execute("SELECT evens FROM summary").fetchone() == (1,)


def test_missing_var_names_model_and_line(project_dir):
    project = SqlProject.load(project_dir)
    with pytest.raises(SqlModelError) as info:
        project.run(duckdb.connect(), select=["summary"])
    assert info.value.model == "summary" and info.value.line == 1
    assert "label" in str(info.value) and "summary.sql:1" in str(info.value)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        (
            {
                "a.sql": "select * from {{ ref('b') }}",
                "b.sql": "select * from {{ ref('c') }}",
                "c.sql": "select * from {{ ref('a') }}",
            },
            "cycle",
        ),
        ({"x/m.sql": "select 1", "y/m.sql": "select 2"}, "duplicate model name 'm'"),
    ],
    ids=["cycle", "duplicate_names"],
)
def test_project_errors_are_reported(tmp_path, files, match):
    for rel, text in files.items():
        write(tmp_path, rel, text)
    with pytest.raises(SqlProjectError, match=match):
        SqlProject.load(tmp_path)


def test_unknown_ref_names_the_line(tmp_path):
    write(tmp_path, "a.sql", "select 1\nfrom {{ ref('nope') }}")
    with pytest.raises(SqlModelError, match="unknown model 'nope'") as info:
        SqlProject.load(tmp_path)
    assert info.value.line == 2


def test_macros_are_created_before_models(tmp_path):
    write(tmp_path, "macros/twice.sql", "-- a shared rule\ncreate or replace macro twice(x) as 2 * x;\n")
    write(tmp_path, "doubled.sql", "select twice(n) as m from {{ ref('numbers') }}")
    write(tmp_path, "numbers.sql", "select range as n from range(3)")
    project = SqlProject.load(tmp_path)
    assert set(project.models) == {"doubled", "numbers"}
    con = duckdb.connect()
    project.run(con, select=["doubled"])
    assert con.execute("SELECT list(m ORDER BY m) FROM doubled").fetchone() == ([0, 2, 4],)
    write(tmp_path, "macros/twice.sql", "create or replace macro twice(x) as 2 * ;")
    with pytest.raises(SqlProjectError, match="macro file .*twice.sql"):
        SqlProject.load(tmp_path).run(duckdb.connect())


def test_repository_macros_hold_shared_rules():
    con = duckdb.connect()
    SqlProject.load().run(con, select=[])
    buckets = con.execute(
        "SELECT unnest(context_buckets('{\"complexity\": \"high\"}', ['complexity', 'domain']), recursive := true)"
    ).fetchall()
    assert buckets == [("*", "*"), ("complexity", "high")]
    texts = con.execute(
        "SELECT json_text('\"a b\"'), json_text('{\"k\": 1}'), json_text('[]'), json_text(' '), json_text('x')"
    ).fetchone()
    assert texts == ("a b", '{"k":1}', None, None, "x")
    assert con.execute("SELECT keys_distinct(2, 2, 'collision')").fetchone() == (True,)
    with pytest.raises(duckdb.InvalidInputException, match="collision"):
        con.execute("SELECT keys_distinct(1, 2, 'collision')").fetchone()


def test_sql_error_maps_to_file_line(tmp_path):
    write(tmp_path, "good.sql", "select 1 as a")
    bad = write(
        tmp_path,
        "marts/bad.sql",
        "-- materialized: table\n-- a comment\nselect\n    a,\n    missing_column\nfrom {{ ref('good') }}\n",
    )
    project = SqlProject.load(tmp_path)
    with pytest.raises(SqlModelError) as info:
        project.run(duckdb.connect())
    err = info.value
    assert err.model == "bad" and err.path == bad and err.line == 5
    assert "missing_column" in str(err) and f"{bad}:5" in str(err)
    write(tmp_path, "marts/bad.sql", "select a\nfrom {{ ref('good') }}\nwhere\n")
    with pytest.raises(SqlModelError) as info:
        SqlProject.load(tmp_path).run(duckdb.connect())
    assert info.value.line == 3


def test_repository_project_loads():
    project = SqlProject.load()
    assert SQL_ROOT.name == "dbt_like_sql" and SQL_ROOT.is_dir()
    for mart in ("agent_stats", "agent_task_stats"):
        assert "stg_outcome_events" in project.upstream(mart)
        assert "agent_daily_stats" in project.upstream(mart)
