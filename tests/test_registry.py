"""What the registry logs: one set of metric names for every forecaster, folds as steps."""

import math

import pandas as pd

from tasks.backtest import Scores
from tasks.registry import (
    backtest_metrics,
    data_fingerprint,
    environment_differences,
    flatten,
    fold_metric_steps,
    model_requirements,
)


def test_every_forecaster_is_logged_under_the_same_metric_names():
    scores = Scores(
        forecast=None, intervals={}, residuals=None, metrics={"mae": 2.0, "mase": 0.5}, coverage={80: 0.75, 95: 1.0}, epochs=[0]
    )
    assert backtest_metrics(scores) == [
        ("backtest_mae", 2.0, 0),
        ("backtest_mase", 0.5, 0),
        ("interval_coverage_80", 0.75, 0),
        ("interval_coverage_95", 1.0, 0),
    ]


def test_fold_metrics_are_steps_numbered_by_fold():
    rows = pd.DataFrame(
        {"fold": [0, 1], "mae": [1.0, 2.0], "rmse": [3.0, 4.0], "mape": [5.0, 6.0], "smape": [7.0, 8.0], "mase": [0.1, math.nan]}
    )
    steps = fold_metric_steps(rows)
    assert steps[:5] == [
        ("fold_mae", 1.0, 0),
        ("fold_rmse", 3.0, 0),
        ("fold_mape", 5.0, 0),
        ("fold_smape", 7.0, 0),
        ("fold_mase", 0.1, 0),
    ]
    assert steps[5] == ("fold_mae", 2.0, 1) and len(steps) == 10


def test_config_is_flattened_into_params_and_the_data_fingerprinted():
    assert flatten({"model": {"lags": 14, "lstm_units": [32]}, "preset": "default"}) == {
        "model.lags": "14",
        "model.lstm_units": "[32]",
        "preset": "default",
    }
    history = pd.DataFrame({"date": pd.to_datetime(["2024-01-01", "2024-01-02"]), "travellers": [1, 2]})
    fingerprint = data_fingerprint(history)
    assert (fingerprint["data.rows"], fingerprint["data.first_date"], fingerprint["data.last_date"]) == (
        "2",
        "2024-01-01",
        "2024-01-02",
    )
    assert len(fingerprint["data.history_sha256"]) == 64 and "data.file_sha256" not in fingerprint


def test_a_second_sigterm_while_a_stopping_run_records_its_end_is_ignored_then_the_handler_is_back():
    import os
    import signal

    from tasks.registry import further_sigterm_ignored

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with further_sigterm_ignored():
            os.kill(os.getpid(), signal.SIGTERM)  # as Prefect's runner cancelling a run that is already stopping
        assert received == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_logged_models_pins_are_compared_with_the_installed_packages(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(model_requirements()))
    assert environment_differences(requirements) == []  # as this environment logs them
    pins = model_requirements()
    pins[0] = pins[0].split("==")[0] + "==0.0.1"
    requirements.write_text("\n".join([*pins, "-r other.txt", "# pandas==0.0.1", "no-such-package-here==1.0  # a comment"]))
    installed = model_requirements()[0].split("==")[1]
    assert environment_differences(requirements) == [
        f"{pins[0].split('==')[0]} 0.0.1, here {installed}",
        "no-such-package-here 1.0, here not installed",
    ]
    assert environment_differences(tmp_path / "none.txt") == []  # older versions may have none
