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


def test_cycle_is_reported(tmp_path):
    write(tmp_path, "a.sql", "select * from {{ ref('b') }}")
    write(tmp_path, "b.sql", "select * from {{ ref('c') }}")
    write(tmp_path, "c.sql", "select * from {{ ref('a') }}")
    with pytest.raises(SqlProjectError, match="cycle"):
        SqlProject.load(tmp_path)


def test_unknown_ref_and_duplicate_names(tmp_path):
    write(tmp_path, "a.sql", "select 1\nfrom {{ ref('nope') }}")
    with pytest.raises(SqlModelError, match="unknown model 'nope'") as info:
        SqlProject.load(tmp_path)
    assert info.value.line == 2
    (tmp_path / "a.sql").unlink()
    write(tmp_path, "x/m.sql", "select 1")
    write(tmp_path, "y/m.sql", "select 2")
    with pytest.raises(SqlProjectError, match="duplicate model name 'm'"):
        SqlProject.load(tmp_path)


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
