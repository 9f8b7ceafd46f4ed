from collections.abc import Iterator

import pytest

from learning_pipeline.defs.resources import LakeResource
from learning_pipeline_tests._servers import postgres_database


@pytest.fixture
def lake(tmp_path) -> LakeResource:
    """A lake resource on a fresh, empty data directory."""
    return LakeResource(data_dir=str(tmp_path / "data"))


@pytest.fixture
def dagster_pg_url(monkeypatch) -> Iterator[str]:
    """A fresh database on the local PostgreSQL, set as DAGSTER_PG_URL (which deploy/dagster.yaml reads)."""
    with postgres_database("dagster_test") as name:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
        monkeypatch.setenv("DAGSTER_PG_URL", url)
        yield url
