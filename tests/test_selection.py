"""The procedure that chooses the default weighting: validation windows before the test days only."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.backtest import run_backtest
from tasks.config import BacktestConfig, DataConfig, ModelConfig
from tasks.forecasters import make_forecaster
from tasks.lstm import LstmForecaster
from tasks.selection import (
    CANDIDATES,
    candidate_fits,
    candidate_of,
    choose,
    ratios_to_best_peer,
    reweighted,
    rolling,
    validation_protocol,
    without,
)
from tests.test_forecasters import weekly

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])
MODEL = ModelConfig(lags=7, validation_days=14, ensemble=1, lstm_units=[4], dense_units=[4], epochs=2, weighting_days=0)
PROTOCOL = BacktestConfig(test_days=14, refit_every=7)


def test_the_validation_window_ends_where_the_test_days_begin():
    notebook = validation_protocol(BacktestConfig(first_days_only=185, test_days=31), 1720)
    recent = validation_protocol(BacktestConfig(test_days=60, refit_every=7), 1720)
    assert (notebook.first_days_only, notebook.test_days, notebook.refit_every) == (154, 31, 0)
    assert (recent.first_days_only, recent.test_days, recent.refit_every) == (1660, 60, 7)
    earlier = validation_protocol(BacktestConfig(test_days=60, refit_every=7, window_days=154), 1720, origin=2)
    assert (earlier.first_days_only, earlier.test_days, earlier.window_days) == (1600, 60, 154)  # ends where origin 1 begins
    short = validation_protocol(BacktestConfig(first_days_only=185, test_days=31), 119)
    assert short.first_days_only == 88  # a series shorter than the window: its test days are its own last 31
    with pytest.raises(ValueError, match="validation origin 2: 180 days moved back by 2 x 60 test days leave 60, not more"):
        validation_protocol(BacktestConfig(test_days=60, refit_every=7), 180, origin=2)


def test_ratios_and_the_choice_by_hand():
    maes = {"seasonal_naive": 100.0, "auto_ets": 80.0, "lstm networks": 120.0, "lstm inverse_mae": 72.0}
    assert ratios_to_best_peer(maes, ["seasonal_naive", "auto_ets"]) == {"networks": 1.5, "inverse_mae": 0.9}
    ratios = pd.DataFrame(
        {"candidate": ["networks", "networks", "equal", "equal", "best", "best"], "ratio": [2.0, 0.5, 0.8, 1.25, 1.0, 1.0]}
    )
    choice, means = choose(ratios)  # geometric means 1.0, 1.0, 1.0: the first listed wins the tie
    assert choice == "networks" and means.to_dict() == pytest.approx({"networks": 1.0, "equal": 1.0, "best": 1.0})
    assert choose(ratios.assign(ratio=[2.0, 0.5, 0.8, 1.0, 1.0, 1.0]))[0] == "equal"
    assert math.isclose(choose(ratios)[1]["equal"], math.sqrt(0.8 * 1.25))


def three_members() -> LstmForecaster:
    """A combined forecaster's validation errors by hand: MAE 2 (lstm), 4 (auto_ets), 1 (naive)."""
    forecaster = LstmForecaster(DATA, MODEL.model_copy(update={"combine_with": ["auto_ets", "naive"]}))
    forecaster.validation_errors = {
        "lstm": np.array([2.0, -2.0]),
        "auto_ets": np.array([4.0, 4.0]),
        "naive": np.array([1.0, 1.0]),
    }
    forecaster.validation_holidays = np.zeros(2, dtype=bool)
    return forecaster


def test_a_member_left_out_gets_no_weight_and_the_others_are_weighted_without_it():
    forecaster = three_members()
    assert reweighted(forecaster, "inverse_mae").weights == pytest.approx({"lstm": 2 / 7, "auto_ets": 1 / 7, "naive": 4 / 7})
    assert reweighted(forecaster, "inverse_mae without naive").weights == {"lstm": 2 / 3, "auto_ets": 1 / 3, "naive": 0.0}
    assert reweighted(forecaster, "best without naive").weights == {"lstm": 1.0, "auto_ets": 0.0, "naive": 0.0}
    assert forecaster.weights == {"lstm": 1.0}  # the forecaster itself is not reweighted
    with pytest.raises(ValueError, match="'auto_arima' is not a member"):
        reweighted(forecaster, "trimmed without auto_arima")
    assert without(["naive"], ["networks", "equal", "best"]) == [
        "networks",
        "equal",
        "best",
        "equal without naive",
        "best without naive",
    ]


def test_a_rolling_candidate_weights_each_day_by_its_rule_and_keeps_a_left_out_member_out():
    forecaster = three_members()
    rolled = reweighted(forecaster, "inverse_mae without naive rolling")
    assert rolled.weights == {"lstm": 2 / 3, "auto_ets": 1 / 3, "naive": 0.0}  # the fit's days
    assert (rolled.model.rolling_weights, rolled.model.combination, list(rolled.validation_errors)) == (
        True,
        "inverse_mae",
        ["lstm", "auto_ets"],
    )
    # A day after the fit: the last 2 errors are the second validation day's and the fit's next day's.
    later = {"lstm": np.array([6.0]), "auto_ets": np.array([2.0]), "naive": np.array([0.0])}
    assert rolled.rolling_weights(later, 1) == pytest.approx({"lstm": 3 / 7, "auto_ets": 4 / 7})  # MAE 4 and 3
    assert not reweighted(forecaster, "inverse_mae without naive").model.rolling_weights
    assert rolling(["networks", "equal"]) == ["networks", "equal", "equal rolling"]
    assert not reweighted(rolled, "networks").model.rolling_weights  # the networks alone are never reweighted
    assert candidate_of(ModelConfig()) == "inverse_mse rolling"  # the default's own candidate, scored on test days
    assert candidate_of(ModelConfig(combination="trimmed", rolling_weights=False)) == "trimmed"


def validation_choice(history: pd.DataFrame) -> tuple[str, dict[str, float]]:
    """The procedure on one series: peers and every candidate on the validation window, the choice."""
    window = validation_protocol(PROTOCOL, len(history))
    peers = ["seasonal_naive", "auto_ets"]
    fits = {kind: (lambda t, k=kind: make_forecaster(k, DATA, MODEL).fit(t)) for kind in peers}
    result = run_backtest(history, fits | candidate_fits(DATA, MODEL, rolling(CANDIDATES)), window)
    ratios = ratios_to_best_peer({name: m["mae"] for name, m in result.metrics.items()}, peers)
    return choose(pd.DataFrame({"candidate": list(ratios), "ratio": list(ratios.values())}))[0], ratios


def test_the_choice_is_the_same_when_the_test_days_are_garbled():
    history = weekly(140)
    garbled = history.copy()
    test_days = garbled.index[-PROTOCOL.test_days :]
    garbled.loc[test_days, "travellers"] = np.random.default_rng(1).integers(1, 10_000_000, len(test_days))
    garbled.loc[test_days, "day_type"] = 2
    original, after = validation_choice(history), validation_choice(garbled)
    assert set(original[1]) == set(rolling(CANDIDATES))
    assert original == after  # the same ratios to the digit, the same choice


def test_the_benchmark_refuses_a_window_too_short_for_the_default_before_fitting_anything(tmp_path):
    """A 119-day city: the notebook window's first 88 days hold 57 before its 31 test days, and the default needs 64."""
    short = tmp_path / "short_city.csv"
    root = Path(__file__).resolve().parents[1]
    lines = (root / "benchmarks/devset/bart_covid.csv").read_text().splitlines()
    short.write_text("\n".join(lines[:120]) + "\n")
    run = lambda *args: subprocess.run(
        [sys.executable, "benchmarks/accuracy.py", "--data", str(short), "--seeds", "1", "--out", str(tmp_path), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    validation = run("--validation", "--protocols", "notebook")
    assert validation.returncode == 1
    assert validation.stderr.strip().endswith(
        f"{short} (119 days), protocol notebook: 88 days, of which the last 31 are forecast; the default LSTM needs 64 "
        "days before them to fit. Leave the protocol out (--protocols) or give a longer history."
    )
    assert "Traceback" not in validation.stderr
    test_days = run()  # the test days: notebook fits (119 days, 88 before its 31), recent does not
    assert test_days.returncode == 1
    assert f"{short} (119 days), protocol recent: 119 days, of which the last 60 are forecast" in test_days.stderr
    assert not list(tmp_path.glob("accuracy*"))  # nothing written
