"""The train flow under a real (temporary) Prefect server with a real MLflow store in tmp."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

pytestmark = pytest.mark.integration  # real servers or processes


@pytest.fixture(scope="module")
def trained(prefect_server, tmp_path_factory):
    """One short training run (2 epochs, 7-day backtest) on the bundled sample, shared by the tests below."""
    from flows.train import train
    from tasks.config import load_settings

    root = tmp_path_factory.mktemp("flow")
    settings = load_settings(
        None,
        ["model.epochs=2", "backtest.test_days=7"],
        updates={"mlflow": {"store_dir": str(root / "mlruns")}, "output_dir": str(root / "out")},
    )
    return settings, train(settings)


@pytest.fixture
def client(trained):
    from tasks.registry import Registry

    return Registry(trained[0].mlflow).client


def test_run_registers_a_version_with_its_backtest_and_a_child_run_per_compared_forecaster(trained, client):
    settings, summary = trained
    assert summary.model_version == "1" and summary.epochs_run == 2 and summary.kind == "lstm"
    version = client.get_model_version(settings.mlflow.registered_model, summary.model_version)
    assert (
        version.run_id == summary.run_id
        and "Backtest 2024-11-08 .. 2024-11-14: MAE" in version.description
        and "(lstm; " in version.description
    )
    assert (
        version.tags["fitted_through"] == "2024-11-14" and version.tags["kind"] == "lstm"
    )  # refit on every day after the backtest
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["forecaster"] == "lstm"
    assert run.data.tags["mlflow.user"] and run.data.tags["mlflow.source.type"] == "LOCAL"  # as a fluent start_run tags it
    assert list(summary.evaluation.metrics) == ["lstm", "seasonal_naive", "naive", "auto_ets", "auto_theta", "auto_arima"]
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{summary.run_id}'")
    assert sorted(c.data.tags["forecaster"] for c in children) == [
        "auto_arima",
        "auto_ets",
        "auto_theta",
        "naive",
        "seasonal_naive",
    ]
    # The same metric names on every run: the UI's compare view lines them up.
    for one in [run, *children]:
        name = one.data.tags["forecaster"]
        assert one.info.status == "FINISHED"
        for metric in ("rmse", "mae", "mape", "smape", "r2", "mase"):
            assert one.data.metrics[f"backtest_{metric}"] == pytest.approx(summary.evaluation.metrics[name][metric], nan_ok=True)
        assert 0 <= one.data.metrics["interval_coverage_95"] <= 1
        # One fold (refit_every=0): the per-fold metrics are steps, fold 0.
        assert [m.step for m in client.get_metric_history(one.info.run_id, "fold_mae")] == [0]
    assert all(c.info.run_name == c.data.tags["forecaster"] == c.data.params["model.kind"] for c in children)
    # The ratios the gate reads, on the run itself.
    best = min(
        ["seasonal_naive", "naive", "auto_ets", "auto_theta", "auto_arima"], key=lambda n: summary.evaluation.metrics[n]["mae"]
    )
    assert summary.evaluation.best_peer == best
    assert run.data.metrics["backtest_mae_ratio_to_best_peer"] == pytest.approx(
        summary.evaluation.metrics["lstm"]["mae"] / summary.evaluation.metrics[best]["mae"]
    )
    assert f"x the best peer's ({best}), " in version.description
    # The children share the training run's backtest and data, so the compare view shows no false differences.
    shared = ("backtest.test_days", "backtest.refit_every", "model.interval_levels", "data.target_column", "data.history_sha256")
    assert all(c.data.params[key] == run.data.params[key] for c in children for key in shared)


def test_run_logs_config_fingerprint_losses_and_files(trained, client):
    settings, summary = trained
    run = client.get_run(summary.run_id)
    assert run.data.params["model.lags"] == "14" and run.data.params["data.target_column"] == "riders"
    assert run.data.params["data.rows"] == "1720"
    assert (run.data.params["data.first_date"], run.data.params["data.last_date"]) == ("2020-03-01", "2024-11-14")
    assert len(run.data.params["data.file_sha256"]) == 64
    assert [m.step for m in client.get_metric_history(summary.run_id, "epoch_loss")] == [1, 2]
    # The registered fit's combination: one weight per member, from its validation errors.
    members = ["lstm", "auto_ets", "auto_theta", "auto_arima", "seasonal_naive", "naive"]
    weights = [run.data.metrics[f"combination_weight_{m}"] for m in members]
    assert sum(weights) == pytest.approx(1) and all(run.data.metrics[f"validation_mae_{m}"] > 0 for m in members)
    assert len(client.get_metric_history(summary.run_id, "epoch_val_loss")) == 2
    files = {f.path for f in client.list_artifacts(summary.run_id)}
    assert {
        "loss.png",
        "backtest.png",
        "backtest.csv",
        "fold_metrics.csv",
        "metrics.csv",
        "validation_report.csv",
        "validation_report.json",
    } <= files
    assert str(settings.mlflow.store_dir / "artifacts") in run.info.artifact_uri


def test_registered_version_loads_and_forecasts_travellers(trained):
    import mlflow

    settings, summary = trained
    from tasks.registry import Registry

    mlflow.set_tracking_uri(Registry(settings.mlflow).uri)
    model = mlflow.pyfunc.load_model(f"models:/{settings.mlflow.registered_model}/{summary.model_version}")
    recent = pd.read_csv(SAMPLE).tail(30)[["date", "riders", "cumulative_cases", "day_type"]]
    forecast = model.predict(recent)
    assert len(forecast) == 30 - (14 + 7) + 1  # 14 lags after a week that gives the first reference
    assert forecast["date"].iloc[-1] == "2024-11-15" and (forecast["step"] == 1).all()
    assert np.isfinite(forecast["forecast"]).all()
    # Real units: millions of riders a day, not the scaled 0..1 range.
    assert forecast["forecast"].between(1e5, 2e7).all()
    # Intervals from the backtest residuals: nested, around the forecast.
    assert (forecast["lower_95"] <= forecast["lower_80"]).all() and (forecast["lower_80"] < forecast["forecast"]).all()
    assert (forecast["forecast"] < forecast["upper_80"]).all() and (forecast["upper_80"] <= forecast["upper_95"]).all()
    # The same model forecasts the days after its input when asked for them.
    week = model.predict(recent, params={"days": 7})
    assert week["date"].tolist()[::6] == ["2024-11-15", "2024-11-21"] and week["step"].tolist() == list(range(1, 8))
    # Too little input is the caller's error, said with the numbers (a 400 over REST), for both ways of asking.
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"model input has 5 day\(s\); lstm .* needs at least 21") as caught:
        model.predict(recent.tail(5))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match=r"5 day\(s\) of history given; lstm .* forecasts from at least 21"):
        model.predict(recent.tail(5), params={"days": 3})


def test_a_version_this_run_loaded_is_not_loaded_again(trained):
    from tasks.registry import Registry

    settings, summary = trained
    registry = Registry(settings.mlflow)
    version = registry.version(summary.model_version)
    first = registry.load(version)
    assert first.registered_as == (registry.uri, settings.mlflow.registered_model, summary.model_version)
    assert registry.load(version, [None, first]) is first
    again = registry.load(version)  # not given: loaded afresh
    assert again is not first and again.registered_as == first.registered_as


def test_a_version_logged_with_other_packages_loads_with_a_warning_that_names_them(trained, caplog):
    import mlflow.artifacts

    from tasks.registry import Registry

    settings, summary = trained
    registry = Registry(settings.mlflow)
    version = registry.version(summary.model_version)
    with caplog.at_level("WARNING", logger="tasks.registry"):
        registry.load(version)
    assert not [r for r in caplog.records if r.name == "tasks.registry"]
    requirements = Path(mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}")) / "requirements.txt"
    logged = requirements.read_text()
    requirements.write_text(re.sub(r"(?m)^keras==.*$", "keras==0.0.1", logged))
    try:
        with caplog.at_level("WARNING", logger="tasks.registry"):
            assert registry.load(version).registered_as == (registry.uri, version.name, str(version.version))
    finally:
        requirements.write_text(logged)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "tasks.registry"]
    assert f"v{version.version} was logged with other packages than these (keras 0.0.1, here " in warning


def test_a_statistical_peer_registers_loads_and_forecasts_like_the_lstm(trained, tmp_path):
    from flows.train import train
    from tasks.registry import Registry

    settings, _ = trained
    peer = settings.model_copy(update={"model": settings.model.model_copy(update={"kind": "auto_ets"}), "output_dir": tmp_path})
    summary = train(peer)
    assert summary.kind == "auto_ets" and summary.epochs_run == 0
    assert next(iter(summary.evaluation.metrics)) == "auto_ets" and "lstm" not in summary.evaluation.metrics
    registry = Registry(settings.mlflow)
    version = registry.client.get_model_version(settings.mlflow.registered_model, summary.model_version)
    assert version.tags["kind"] == "auto_ets"
    forecaster = registry.load(version)
    history = pd.read_csv(SAMPLE, parse_dates=["date"]).rename(columns={"riders": "travellers"})
    ahead = forecaster.predict_days(history, 7)
    assert len(ahead) == 7 and ahead["forecast"].between(1e5, 2e7).all()
    assert summary.evaluation.metrics["auto_ets"]["mae"] == pytest.approx(
        registry.client.get_run(summary.run_id).data.metrics["backtest_mae"]
    )


def test_bad_file_stops_before_training_and_leaves_the_registry_as_it_was(trained, client, tmp_path):
    from flows.train import train
    from tasks.input_file import InputValidationError

    settings, _ = trained
    bad = pd.read_csv(SAMPLE)
    bad.loc[10, "riders"] = -5
    bad.loc[20, "cumulative_cases"] = 0
    bad.to_csv(tmp_path / "bad.csv", index=False)
    runs_before = client.search_runs([client.get_experiment_by_name(settings.mlflow.experiment).experiment_id])
    versions = lambda: [str(v.version) for v in client.search_model_versions(f"name='{settings.mlflow.registered_model}'")]
    versions_before = versions()
    with pytest.raises(InputValidationError) as caught:
        train(settings.model_copy(update={"data": settings.data.model_copy(update={"path": tmp_path / "bad.csv"})}))
    assert caught.value.report[["line", "column"]].values.tolist() == [[12, "riders"], [22, "cumulative_cases"]]
    report_files = sorted(settings.output_dir.glob("*/validation_report.csv"))
    assert pd.read_csv(report_files[-1])["line"].tolist() == [12, 22]
    assert versions() == versions_before and "1" in versions_before
    runs_after = client.search_runs([client.get_experiment_by_name(settings.mlflow.experiment).experiment_id])
    assert len(runs_after) == len(runs_before)


def test_fit_progress_keeps_one_terminal_line_per_network_and_summarises_each():
    import io

    from tasks.train_tasks import FitProgress

    screen = io.StringIO()
    progress = FitProgress(max_epochs=4, bar=screen, members=2)
    for epoch, loss in [(1, 0.5), (2, 0.25), (3, 0.375)]:
        progress.record(epoch, {"member": 1, "loss": 0.9, "val_loss": loss})
    progress.record(1, {"member": 2, "loss": 0.125})
    progress.clear()
    assert screen.getvalue().split("\r\x1b[K") == [
        "",
        "network 1/2 [#####---------------] epoch 1/4, best loss 0.5000",
        "network 1/2 [##########----------] epoch 2/4, best loss 0.2500",
        "network 1/2 [###############-----] epoch 3/4, best loss 0.2500",
        "network 2/2 [#####---------------] epoch 1/4, best loss 0.1250",
        "",
    ]
    assert progress.summary() == [
        "network 1: 3 of 4 epochs, best at epoch 2 (loss 0.2500, stopped early)",
        "network 2: 1 of 4 epochs, best at epoch 1 (loss 0.1250, stopped early)",
    ]


def test_fit_progress_without_a_terminal_writes_nothing():
    from tasks.train_tasks import FitProgress

    progress = FitProgress(max_epochs=2)
    progress.record(1, {"loss": 0.5})
    progress.clear()
    assert progress.summary() == ["network 1: 1 of 2 epochs, best at epoch 1 (loss 0.5000, stopped early)"]


def test_networks_pretrained_on_another_city_are_logged_and_a_bad_row_there_registers_nothing(trained, client, tmp_path):
    from flows.train import train
    from tasks.input_file import InputValidationError

    settings, _ = trained
    other_city = tmp_path / "other_city.csv"
    pd.read_csv(Path(__file__).parents[1] / "benchmarks/devset/nyc_lirr.csv").to_csv(other_city, index=False)
    pretrain = settings.model_copy(
        update={"data": settings.data.model_copy(update={"pretrain_paths": [other_city]}), "output_dir": tmp_path}
    )
    summary = train(pretrain)
    assert client.get_run(summary.run_id).data.metrics["pretrained_series"] == 1.0  # LIRR's 1,720 days: a year and more
    versions = lambda: sorted(int(v.version) for v in client.search_model_versions(f"name='{settings.mlflow.registered_model}'"))
    before = versions()
    broken = pd.read_csv(other_city, dtype=str)
    broken.loc[100, "riders"] = "-5"
    broken.to_csv(other_city, index=False)
    with pytest.raises(InputValidationError) as caught:
        train(pretrain)
    assert caught.value.path == other_city and caught.value.report[["line", "column"]].values.tolist() == [[102, "riders"]]
    assert versions() == before
