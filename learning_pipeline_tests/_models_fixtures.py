"""Shared helpers for the models tests: simulated lakes with known truth, MLflow in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from learning_pipeline.lib.simulation.simulate import SimulationConfig, SimulationTruth, generate_table
from learning_pipeline.lib.storage.lake import LakePaths, write_parquet_atomic


def simulated_lake(root: Path, **config) -> tuple[LakePaths, SimulationConfig, SimulationTruth]:
    """Write simulated events straight into the lake layout (one Parquet file per event_date)."""
    cfg = SimulationConfig(**config)
    paths = LakePaths.at(root).ensure()
    table = generate_table(cfg, lineage=True)
    day = pc.strftime(table.column("timestamp"), "%Y-%m-%d")
    for value in pc.unique(day).to_pylist():
        write_parquet_atomic(
            paths.partition_dir("outcome_events", value) / "data.parquet", table.filter(pc.equal(day, value))
        )
    return paths, cfg, SimulationTruth(cfg)


def models_lake(root: Path, **config) -> tuple[LakePaths, dict, SimulationTruth]:
    """A simulated lake with logged propensities, and the models assets' resources over it: the lake, and
    MLflow (sqlite) in the same data directory."""
    from learning_pipeline.defs.models.resources import MlflowResource
    from learning_pipeline.defs.resources import LakeResource

    paths, _, truth = simulated_lake(root, propensities=True, **config)
    resources = {
        "lake": LakeResource(data_dir=str(paths.root)),
        "mlflow": MlflowResource(data_dir=str(paths.root)),
    }
    return paths, resources, truth


def sqlite_uri(root: Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def artifact_uri(root: Path) -> str:
    return (Path(root).resolve() / "mlartifacts").as_uri()


def operator_makes_live(paths: LakePaths, uri: str, version: int, by: str = "test operator") -> None:
    """What a person does: approve a gate-accepted version and make it live (@champion)."""
    from learning_pipeline.lib.autonomy import operations

    operations.approve_and_go_live(
        paths, uri, version, by, "accepted by the gate; the operator makes it live"
    )
