"""What a person sees of a learning cycle in MLflow (sqlite tracking store): the registered model's description
(what it is, how versions move through the stages), and the success-over-time plot's data, which covers the
held-out day as well as the training window."""

from datetime import date

import pandas as pd
from mlflow import MlflowClient

from learning_pipeline.lib.learning import registry
from learning_pipeline.lib.learning.cycle import (
    CycleConfig,
    Window,
    load_candidate,
    run_cycle,
    save_candidate,
    train_candidate,
)
from learning_pipeline.lib.storage.warehouse import lake_connection
from learning_pipeline_tests._models_fixtures import artifact_uri, simulated_lake, sqlite_uri

CONFIG = CycleConfig(window_days=3, contextual_model=False, n_bootstrap=50)


def test_the_registered_model_says_what_it_is_and_how_versions_move(tmp_path):
    paths, _, _ = simulated_lake(
        tmp_path / "data", days=4, events_per_day=400, seed=5, end_date="2025-03-04", propensities=True
    )
    uri = sqlite_uri(tmp_path)
    for day in ("2025-03-04", "2025-03-04"):  # a second version keeps the one description
        run_cycle(paths, day, CONFIG, uri, artifact_location=artifact_uri(tmp_path))
    client = MlflowClient(uri)
    model = client.get_registered_model(registry.REGISTERED_MODEL)
    assert len(client.search_model_versions(f"name='{registry.REGISTERED_MODEL}'")) == 2
    description = model.description
    assert description == registry.REGISTERED_MODEL_DESCRIPTION
    assert description.startswith("Routes a task to an agent")
    for stage in ("`candidate`", "`rejected`", "`approved`", "`shadow`", "`canary`", "`live`", "retired"):
        assert stage in description
    for alias in ("@challenger", "@champion", "@canary", "@shadow"):
        assert alias in description


def test_the_success_plot_gets_the_held_out_day(tmp_path):
    paths, _, _ = simulated_lake(
        tmp_path / "data", days=4, events_per_day=400, seed=6, end_date="2025-03-04", propensities=True
    )
    window = Window.for_partition("2025-03-04", CONFIG)
    with lake_connection(paths) as con:
        trained = train_candidate(con, window, CONFIG)
        held_out = con.execute(
            "SELECT agent_name, avg(CASE WHEN lower(status) = 'success' THEN 1 ELSE 0 END) AS rate, count(*) AS n "
            "FROM outcome_events WHERE event_date = '2025-03-04' GROUP BY 1"
        ).df()
    save_candidate(paths, "2025-03-04", trained)
    _, daily = load_candidate(paths, "2025-03-04")  # what the Dagster assets hand to the plot
    days = sorted({pd.Timestamp(d).date() for d in daily["day"]})
    assert days == [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3), date(2025, 3, 4)]
    last = daily[pd.to_datetime(daily["day"]).dt.date == date(2025, 3, 4)].set_index("agent_name")
    expected = held_out.set_index("agent_name")
    assert sorted(last.index) == sorted(expected.index)
    pd.testing.assert_series_equal(
        last["n"].sort_index(), expected["n"].sort_index(), check_names=False, check_dtype=False
    )
    pd.testing.assert_series_equal(
        last["success_rate"].sort_index(), expected["rate"].sort_index(), check_names=False, atol=1e-12
    )
