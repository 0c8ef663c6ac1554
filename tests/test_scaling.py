import numpy as np
import pandas as pd
import pytest

from tasks.config import ModelConfig
from tasks.dataset import frame_dataset, scale_history
from tasks.scaling import fit_scaler, inverse_scale_target, scale_rows


def test_scaler_maps_training_range_to_zero_one_and_back():
    train = np.array([[10.0, 0.0], [20.0, 5.0], [30.0, 10.0]])
    scaler = fit_scaler(train)
    np.testing.assert_allclose(scale_rows(scaler, train), [[0, 0], [0.5, 0.5], [1, 1]])
    np.testing.assert_allclose(scale_rows(scaler, [[40.0, 2.5]]), [[1.5, 0.25]])  # unseen rows may leave [0, 1]
    np.testing.assert_allclose(inverse_scale_target(scaler, np.array([[0.25], [1.5]])), [[15.0], [40.0]])


def _history(days: int) -> pd.DataFrame:
    travellers = np.arange(days, dtype=np.int64) * 10 + 100
    return pd.DataFrame({
        "date": pd.date_range("2021-01-01", periods=days),
        "travellers": travellers,
        "cases": np.arange(days, dtype=np.int64),
        "day_type": np.arange(days, dtype=np.int64) % 3,
    })


def test_scaler_is_fitted_on_rows_before_the_test_window_only():
    config = ModelConfig(lags=2, test_days=7, validation_days=3)
    history = _history(30)
    history.loc[25, "travellers"] = 1_000_000  # a test-window spike must not move the scale
    series = scale_history(history, ["cases"], config)
    assert series.first_test_row == 23
    assert series.scaler.data_min_[0] == 100 and series.scaler.data_max_[0] == 100 + 22 * 10
    assert series.features == ["travellers", "cases", "day_type"]
    np.testing.assert_allclose(series.scaled[22], [1.0, 1.0, 0.5])  # day type 22 % 3 = 1 of 0..2


def test_split_keeps_train_validation_and_test_targets_apart():
    config = ModelConfig(lags=2, horizon=2, test_days=7, validation_days=3)
    dataset = frame_dataset(scale_history(_history(30), ["cases"], config), config)
    # test: first target inside the last 7 days (rows 23..29) and both targets present -> 23..28
    np.testing.assert_array_equal(dataset.test.target_rows, [23, 24, 25, 26, 27, 28])
    # validation: first target in rows 20..22, last target before row 23
    np.testing.assert_array_equal(dataset.validation.target_rows, [20, 21])
    # train: last target before row 20
    np.testing.assert_array_equal(dataset.train.target_rows, np.arange(2, 19))


def test_too_short_history_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="history has 20 days.*need at least 26"):
        scale_history(_history(20), ["cases"], ModelConfig(lags=2, test_days=7, validation_days=14))
