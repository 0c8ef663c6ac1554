import numpy as np
import pandas as pd
from pandas.testing import assert_frame_equal

from tasks.framing import frame_samples, series_to_supervised

# Three features (travellers, cumulative cases, day type) over eight days; values chosen
# so every cell names its day and feature: day d, feature f -> 10*d + f.
EIGHT_DAYS = np.array([[10 * d + f for f in (1, 2, 3)] for d in range(1, 9)], dtype=float)


def test_series_to_supervised_names_and_shifts_like_the_notebook():
    values = np.array([[1, 10], [2, 20], [3, 30], [4, 40]], dtype=float)
    framed = series_to_supervised(values, n_in=2, n_out=2)
    expected = pd.DataFrame(
        {
            "var1(t-2)": [1.0],
            "var2(t-2)": [10.0],
            "var1(t-1)": [2.0],
            "var2(t-1)": [20.0],
            "var1(t)": [3.0],
            "var2(t)": [30.0],
            "var1(t+1)": [4.0],
            "var2(t+1)": [40.0],
        },
        index=[2],
    )
    assert_frame_equal(framed, expected)


def test_series_to_supervised_keeps_incomplete_rows_when_asked():
    framed = series_to_supervised(np.array([[1.0], [2.0], [3.0]]), n_in=1, n_out=1, dropnan=False)
    assert list(framed.columns) == ["var1(t-1)", "var1(t)"]
    assert np.isnan(framed.iloc[0, 0]) and framed.iloc[2].tolist() == [2.0, 3.0]


def test_seed_layout_five_days_by_three_features():
    samples = frame_samples(EIGHT_DAYS, lags=5, horizon=1, target_index=0)
    assert samples.X.shape == (3, 5, 3)
    assert samples.y.shape == (3, 1)
    # First sample: days 1..5 as input, travellers of day 6 as target.
    np.testing.assert_array_equal(samples.X[0], EIGHT_DAYS[0:5])
    np.testing.assert_array_equal(samples.X[2, -1], [71.0, 72.0, 73.0])  # day 7 feeds the day-8 forecast
    np.testing.assert_array_equal(samples.y[:, 0], [61.0, 71.0, 81.0])
    np.testing.assert_array_equal(samples.target_rows, [5, 6, 7])


def test_multi_day_horizon_targets_consecutive_days():
    samples = frame_samples(EIGHT_DAYS, lags=3, horizon=2, target_index=0)
    np.testing.assert_array_equal(samples.y, [[41, 51], [51, 61], [61, 71], [71, 81]])
    np.testing.assert_array_equal(samples.X[-1], EIGHT_DAYS[3:6])
    np.testing.assert_array_equal(samples.target_rows, [3, 4, 5, 6])
