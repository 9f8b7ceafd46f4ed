"""The asset-check factory: declared rules count their violations; severity tells rules from measures."""

import dagster as dg
import pyarrow as pa

from learning_pipeline.defs.checks import TableCheck, asset_check, keys, outside
from learning_pipeline.defs.resources import LakeResource
from learning_pipeline.lib.storage.lake import write_parquet_atomic


@dg.asset
def scores(lake: LakeResource) -> None:
    table = pa.table({"k": ["a", "a", None, "b"], "g": [1, 1, 1, 2], "v": [0.5, 1.5, None, 0.2]})
    write_parquet_atomic(lake.paths.table("scores") / "data.parquet", table)


def _evaluate(tmp_path, check: TableCheck) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [scores, asset_check(check)],
        resources={"lake": LakeResource(data_dir=str(tmp_path))},
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_rules_count_null_repeated_out_of_range_and_groups(tmp_path):
    check = TableCheck(
        "scores_valid",
        scores,
        "k not null and unique; v in [0, 1]; per g, v sums to at most 1",
        **keys("k"),
        rows={"v_outside_0_1": outside("v")},
        groups={"groups_over_1": (("g",), "sum(v) > 1")},
    )
    evaluation = _evaluate(tmp_path, check)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert {k: v.value for k, v in evaluation.metadata.items()} == {
        "null_keys": 1,
        "duplicate_keys": 1,  # 'a' twice; a missing key is counted as missing, not as repeated
        "v_outside_0_1": 1,  # 1.5; the missing v is not outside
        "groups_over_1": 1,
    }


def test_a_failing_measure_alone_has_its_own_severity(tmp_path):
    def lagging(con, paths):
        rows = con.execute("SELECT count(*) FROM scores").fetchone()[0]
        return rows == 5, {"rows": rows, "detail": {"expected": 5}}

    check = TableCheck(
        "scores_complete",
        scores,
        "v in [0, 2]; 5 rows",
        rows={"v_outside_0_2": outside("v", high=2)},
        measure=lagging,
        measure_severity=dg.AssetCheckSeverity.WARN,
    )
    evaluation = _evaluate(tmp_path, check)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["v_outside_0_2"].value == 0 and evaluation.metadata["rows"].value == 4
    assert evaluation.metadata["detail"].value == {"expected": 5}  # non-scalar metadata as JSON
