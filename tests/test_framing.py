import numpy as np
import pytest

from tasks.encoding import Encoded
from tasks.framing import complete, frame_windows, select

# Three features over eight days; every cell names its day and feature: day d, feature f -> 10*d + f.
EIGHT_DAYS = np.array([[10 * d + f for f in (1, 2, 3)] for d in range(1, 9)], dtype=float)


def _encoded(past: np.ndarray, future_width: int = 0) -> Encoded:
    days = len(past)
    future = np.arange(days * future_width, dtype=float).reshape(days, future_width)
    return Encoded(past=past, future=future, target=past[:, 0], reference=np.arange(days, dtype=float) * 100)


def test_seed_layout_five_days_by_three_features_like_series_to_supervised():
    samples = frame_windows(_encoded(EIGHT_DAYS), lags=5, horizon=1)
    assert samples.X.shape == (3, 5, 3) and samples.y.shape == (3, 1) and samples.future.shape == (3, 0)
    # First sample: days 1..5 as input, travellers of day 6 as target.
    np.testing.assert_array_equal(samples.X[0], EIGHT_DAYS[0:5])
    np.testing.assert_array_equal(samples.X[2, -1], [71.0, 72.0, 73.0])  # day 7 feeds the day-8 forecast
    np.testing.assert_array_equal(samples.y[:, 0], [61.0, 71.0, 81.0])
    np.testing.assert_array_equal(samples.target_rows, [5, 6, 7])
    assert len(samples.inputs) == 1  # no known future: the window alone


def test_multi_day_horizon_targets_consecutive_days_with_their_known_future():
    samples = frame_windows(_encoded(EIGHT_DAYS, future_width=2), lags=3, horizon=2)
    np.testing.assert_array_equal(samples.y, [[41, 51], [51, 61], [61, 71], [71, 81]])
    np.testing.assert_array_equal(samples.X[-1], EIGHT_DAYS[3:6])
    np.testing.assert_array_equal(samples.target_rows, [3, 4, 5, 6])
    # Known future of the last sample: rows 6 and 7 of the future array, flattened.
    np.testing.assert_array_equal(samples.future[-1], [12.0, 13.0, 14.0, 15.0])
    np.testing.assert_array_equal(samples.reference[0], [300.0, 400.0])
    assert len(samples.inputs) == 2


def test_chosen_first_targets_and_the_bounds():
    samples = frame_windows(_encoded(EIGHT_DAYS), lags=2, horizon=1, first_targets=np.array([7, 4]))
    np.testing.assert_array_equal(samples.X[0], EIGHT_DAYS[5:7])
    np.testing.assert_array_equal(samples.y[:, 0], [81.0, 51.0])
    with pytest.raises(ValueError, match=r"first targets must lie in \[2, 7\]"):
        frame_windows(_encoded(EIGHT_DAYS), lags=2, horizon=1, first_targets=np.array([8]))


def test_incomplete_samples_are_found_and_dropped():
    past = EIGHT_DAYS.copy()
    past[1, 2] = np.nan  # day 2 lacks a feature: windows covering it are incomplete
    samples = frame_windows(_encoded(past), lags=2, horizon=1)
    np.testing.assert_array_equal(complete(samples), [False, False, True, True, True, True])
    np.testing.assert_array_equal(select(samples, complete(samples)).target_rows, [4, 5, 6, 7])
