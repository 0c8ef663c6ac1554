"""The LSTM forecaster: its training split, its minimum history, its calibration."""

import numpy as np
import pandas as pd
import pytest
from conftest import counting_history

from tasks.config import DataConfig, ModelConfig
from tasks.encoding import fit_encoder
from tasks.lstm import LstmForecaster

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])


_history = counting_history


def _split(config: ModelConfig, history: pd.DataFrame):
    lstm = LstmForecaster(DATA, config)
    lstm.encoder = fit_encoder(config.encoding, history, ["cases"], ["cases"], [0, 1, 2])
    return lstm.training_samples(history)


def test_training_split_is_chronological_and_complete():
    config = ModelConfig(lags=2, horizon=2, validation_days=3, weighting_days=0, combine_with=[])
    train, validation = _split(config, _history(30))
    # The first week has no reference: the first complete window starts at row 7 -> first target 9.
    np.testing.assert_array_equal(validation.target_rows, [27, 28])  # first target in 27..29, both targets present
    np.testing.assert_array_equal(train.target_rows, np.arange(9, 26))  # last target before row 27
    train, _ = _split(config.model_copy(update={"encoding": "notebook"}), _history(30))
    assert train.target_rows[0] == 2


def test_weighting_days_are_the_last_validation_days_and_stop_nothing():
    config = ModelConfig(lags=2, horizon=2, validation_days=16, weighting_days=7, combine_with=[])
    lstm = LstmForecaster(DATA, config)
    _, validation = _split(config, _history(50))
    stopping, weighing = lstm.split_validation(validation, 50)
    # Validation: first targets 34..48; weighting days are rows 43..49, so a stopping sample's last target is before 43.
    np.testing.assert_array_equal(validation.target_rows, np.arange(34, 49))
    np.testing.assert_array_equal(stopping.target_rows, np.arange(34, 42))
    np.testing.assert_array_equal(weighing.target_rows, np.arange(43, 49))
    same = LstmForecaster(DATA, config.model_copy(update={"weighting_days": 0})).split_validation(validation, 50)
    assert all(part is validation for part in same)


def test_too_short_history_is_refused_with_the_numbers():
    lstm = LstmForecaster(DATA, ModelConfig(lags=2, validation_days=14, weighting_days=0, combine_with=[]))
    assert (lstm.min_history_days, lstm.min_fit_days) == (7 + 2, 7 + 4 + 1 + 14)
    with pytest.raises(ValueError, match=r"training history has 20 days; lstm \(encoding=seasonal, lags=2.*needs at least 26"):
        lstm.fit(_history(20))


@pytest.mark.parametrize(("validation_days", "weighting_days", "weighted_days"), [(5, 0, 5), (14, 7, 7)])
def test_intervals_are_calibrated_on_every_validation_day_and_the_losses_kept(validation_days, weighting_days, weighted_days):
    # The intervals see every validation day; the weights, the last weighting_days of them (or all with 0).
    config = ModelConfig(
        lags=3,
        validation_days=validation_days,
        weighting_days=weighting_days,
        ensemble=2,
        lstm_units=[4],
        dense_units=[],
        epochs=3,
        early_stopping_patience=0,
        combine_with=[],
    )
    lstm = LstmForecaster(DATA, config).fit(_history(60))
    assert len(lstm.calibration) == validation_days and len(lstm.validation_errors["lstm"]) == weighted_days
    assert lstm.epochs_run == 3 and set(lstm.losses) == {"loss", "val_loss"}
