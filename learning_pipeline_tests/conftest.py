import pytest

from learning_pipeline.defs.resources import LakeResource


@pytest.fixture
def lake(tmp_path) -> LakeResource:
    """A lake resource on a fresh, empty data directory."""
    return LakeResource(data_dir=str(tmp_path / "data"))
