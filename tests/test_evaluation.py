import math

import numpy as np
import pytest

from tasks.evaluation import forecast_metrics, metrics_table, seasonal_naive_mae


def test_metrics_match_hand_computed_values():
    actual = np.array([100.0, 200.0, 300.0, 400.0])
    predicted = np.array([110.0, 190.0, 300.0, 440.0])
    # errors 10, -10, 0, 40; mean actual 250
    metrics = forecast_metrics(actual, predicted, mase_scale=20.0)
    assert metrics["mae"] == pytest.approx(15.0)
    assert metrics["rmse"] == pytest.approx(math.sqrt((100 + 100 + 0 + 1600) / 4))  # 21.2132
    assert metrics["mape"] == pytest.approx((10 / 100 + 10 / 200 + 0 + 40 / 400) / 4 * 100)  # 6.25 %
    assert metrics["r2"] == pytest.approx(1 - 1800 / 50_000)  # SS_tot = 150²+50²+50²+150²
    assert metrics["mase"] == pytest.approx(0.75)
    # sMAPE: 2|e| / (|a| + |f|): 20/210, 20/390, 0, 80/840
    assert metrics["smape"] == pytest.approx((20 / 210 + 20 / 390 + 0 + 80 / 840) / 4 * 100)


def test_mape_is_undefined_when_an_actual_value_is_zero():
    assert math.isnan(forecast_metrics(np.array([0.0, 1.0]), np.array([1.0, 1.0]), 1.0)["mape"])


def test_seasonal_naive_mae_is_the_mean_weekly_change():
    week = [10.0, 20, 30, 40, 50, 60, 70]
    series = np.array(week + [v + 7 for v in week] + [v + 21 for v in week])
    # differences at lag 7: seven of 7, then seven of 14
    assert seasonal_naive_mae(series) == pytest.approx(10.5)


def test_metrics_table_puts_forecasters_in_rows_and_metrics_in_columns():
    table = metrics_table(
        {"lstm": forecast_metrics([1.0, 2.0], [1.0, 2.0], 1.0), "naive": forecast_metrics([1.0, 2.0], [2.0, 1.0], 1.0)}
    )
    assert list(table.index) == ["lstm", "naive"]
    assert list(table.columns) == ["mae", "rmse", "mape", "smape", "mase", "r2"]
    assert table.loc["naive", "mae"] == 1.0 and table.loc["lstm", "r2"] == 1.0
