"""Cross-series pretraining: networks fitted on other series' windows, which a series' fit starts from."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.config import DataConfig, ModelConfig
from tasks.framing import Samples
from tasks.input_file import InputValidationError, to_input_format
from tasks.lstm import LstmForecaster
from tasks.network import predict_outputs
from tasks.pretraining import pooled, pretraining_pool, read_pretraining_series
from tests.test_forecasters import weekly

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])
MODEL = ModelConfig(lags=7, validation_days=14, weighting_days=0, ensemble=2, lstm_units=[4], dense_units=[], epochs=3)


def _samples(first_row: int, value: float) -> Samples:
    rows = np.arange(first_row, first_row + 2)
    full = lambda *shape: np.full(shape, value)
    return Samples(X=full(2, 3, 1), future=full(2, 1), y=full(2, 1), reference=rows[:, None] * 1.0, target_rows=rows)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    to_input_format(frame, DATA).to_csv(path, index=False)
    return path


def test_pooled_samples_are_each_series_samples_in_turn_with_their_own_rows():
    both = pooled([_samples(7, 1.0), _samples(7, 2.0)])
    assert both.X.shape == (4, 3, 1) and both.future.shape == (4, 1)
    assert both.y.ravel().tolist() == [1.0, 1.0, 2.0, 2.0]
    assert both.target_rows.tolist() == [7, 8, 7, 8] and both.reference.ravel().tolist() == [7.0, 8.0, 7.0, 8.0]


def test_the_pool_holds_no_day_after_the_fits_last_and_only_series_with_enough_days():
    long, short = weekly(400), weekly(400)[30:]  # from 2022-01-03; the second from 2022-02-02
    pool = pretraining_pool({"long": long, "short": short}, pd.Timestamp("2023-01-03"), 365)
    assert list(pool) == ["long"]  # the short one has 336 days up to 2023-01-03
    assert len(pool["long"]) == 366 and pool["long"]["date"].iloc[-1] == pd.Timestamp("2023-01-03")
    assert list(pretraining_pool({"long": long, "short": short}, pd.Timestamp("2023-01-03"), 336)) == ["long", "short"]


def test_the_pretraining_series_are_every_file_and_series_but_the_one_fitted(tmp_path):
    a, b = _write(weekly(60), tmp_path / "a.csv"), _write(weekly(50, seed=1), tmp_path / "b.csv")
    found = read_pretraining_series(DATA.model_copy(update={"path": a, "pretrain_paths": [a, b]}))
    assert list(found) == ["b.csv"] and len(found["b.csv"]) == 50
    long_format = DATA.model_copy(update={"series_column": "mode"})
    both = pd.concat([to_input_format(weekly(40), DATA).assign(mode=m) for m in ("bus", "rail")])
    both.to_csv(tmp_path / "modes.csv", index=False)
    fitted = long_format.model_copy(
        update={"path": tmp_path / "modes.csv", "series": "bus", "pretrain_paths": [tmp_path / "modes.csv"]}
    )
    assert list(read_pretraining_series(fitted)) == ["modes.csv:rail"]  # a long-format file: every other series


def test_a_fit_starts_from_networks_pretrained_on_series_with_enough_days_only(tmp_path):
    large = weekly(120, seed=2)
    large["travellers"] *= 100  # scale-free inputs: a city a hundred times larger pools with a smaller one
    others = [_write(weekly(120, seed=1), tmp_path / "small.csv"), _write(large, tmp_path / "large.csv")]
    own = weekly(100)
    pretrain = DATA.model_copy(update={"pretrain_paths": others})
    fresh = LstmForecaster(DATA, MODEL).fit(own)
    # each of the others has 100 days up to own's last
    started = LstmForecaster(pretrain, MODEL.model_copy(update={"pretrain_min_days": 100})).fit(own)
    too_few = LstmForecaster(pretrain, MODEL.model_copy(update={"pretrain_min_days": 101})).fit(own)
    _, validation = fresh.training_samples(own)
    outputs = lambda fit: predict_outputs(fit.network, validation, 1)
    assert started.pretrained_on == ["small.csv", "large.csv"] and started.fit_metrics()["pretrained_series"] == 2.0
    assert not np.allclose(outputs(started), outputs(fresh))
    assert too_few.pretrained_on == [] and too_few.fit_metrics()["pretrained_series"] == 0.0
    np.testing.assert_array_equal(outputs(too_few), outputs(fresh))  # no pool: the fit is a fresh one, bit for bit
    assert "pretrained_series" not in fresh.fit_metrics()


def test_a_bad_row_in_a_pretraining_file_stops_the_fit_naming_the_file_row_and_column(tmp_path):
    other = to_input_format(weekly(60, seed=1), DATA).astype({"riders": str})
    other.loc[20, "riders"] = "-5"
    bad = tmp_path / "other_city.csv"
    other.to_csv(bad, index=False)
    with pytest.raises(InputValidationError) as stopped:
        LstmForecaster(DATA.model_copy(update={"pretrain_paths": [bad]}), MODEL).fit(weekly(100))
    assert stopped.value.path == bad
    assert stopped.value.report[["file", "line", "column"]].values.tolist() == [[str(bad), 22, "riders"]]
