"""The forecaster contract: every kind fits, forecasts with intervals, forecasts days ahead, saves and loads."""

import math

import numpy as np
import pandas as pd
import pytest

from tasks.config import DataConfig, ModelConfig
from tasks.forecasters import forecaster_classes, load_forecaster, make_forecaster, with_future_days

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])
FAST_LSTM = ModelConfig(lags=7, validation_days=7, ensemble=1, lstm_units=[4], dense_units=[4], epochs=2, weighting_days=0)


def weekly(days: int, seed: int = 0) -> pd.DataFrame:
    """Weekdays busy, weekends quiet, a little noise, growing cumulative cases (starts on a Monday)."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2022-01-03", periods=days)
    weekend = dates.day_of_week >= 5
    travellers = 1_000_000 * np.where(weekend, 0.55, 1.0) * (1 + 0.02 * rng.standard_normal(days))
    return pd.DataFrame(
        {
            "date": dates,
            "travellers": travellers.round().astype(np.int64),
            "cases": np.arange(days, dtype=np.int64) * 50,
            "day_type": weekend.astype(np.int64),
        }
    )


def small_history() -> pd.DataFrame:
    """Ten days: travellers 100, 110, ..., 190."""
    return pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=10),
            "travellers": np.arange(100, 200, 10, dtype=np.int64),
            "cases": np.arange(10, dtype=np.int64),
            "day_type": np.zeros(10, dtype=np.int64),
        }
    )


def test_naive_forecasts_use_the_last_known_values_by_hand():
    history, rows = small_history(), np.array([8, 9])
    naive, seasonal = (make_forecaster(kind, DATA, ModelConfig()) for kind in ("naive", "seasonal_naive"))
    np.testing.assert_array_equal(naive.forecast_rows(history, rows), [[170.0], [180.0]])
    np.testing.assert_array_equal(seasonal.forecast_rows(history, rows), [[110.0], [120.0]])
    two_days = ModelConfig(horizon=2, encoding="notebook")
    np.testing.assert_array_equal(make_forecaster("naive", DATA, two_days).forecast_rows(history, rows[:1]), [[170.0, 170.0]])
    np.testing.assert_array_equal(
        make_forecaster("seasonal_naive", DATA, two_days).forecast_rows(history, rows[:1]), [[110.0, 120.0]]
    )
    eight_days = ModelConfig(horizon=8, encoding="notebook")  # day 8 ahead: the same weekday as day 1
    assert make_forecaster("seasonal_naive", DATA, eight_days).forecast_rows(history, rows[:1])[0, -1] == 110.0


def test_predict_gives_dated_rows_with_conformal_intervals_by_hand():
    history = small_history()
    naive = make_forecaster("naive", DATA, ModelConfig(interval_levels=[50, 80])).calibrate(np.log([1.1, 1 / 1.2, 1.3, 1 / 1.4]))
    frame = naive.predict(history, history["date"].iloc[[8, 9]])
    assert list(frame.columns) == ["date", "step", "forecast", "lower_50", "upper_50", "lower_80", "upper_80"]
    assert list(frame["date"].dt.strftime("%Y-%m-%d")) == ["2024-01-09", "2024-01-10"] and list(frame["step"]) == [1, 1]
    # 50%: rank ceil(5 * 50 / 100) = 3rd smallest |r| = log 1.3; 80%: 4th = log 1.4
    np.testing.assert_allclose(frame["upper_50"], [170 * 1.3, 180 * 1.3])
    np.testing.assert_allclose(frame["lower_80"], [170 / 1.4, 180 / 1.4])


def test_the_day_after_the_history_can_be_forecast_but_not_a_day_without_enough_history():
    history, seasonal = small_history(), make_forecaster("seasonal_naive", DATA, ModelConfig())
    after = seasonal.predict(history, [pd.Timestamp("2024-01-11")])
    assert after["forecast"].tolist() == [130.0]  # 2024-01-04, the fourth day
    with pytest.raises(ValueError, match="at least 7 days of history before them"):
        seasonal.predict(history, history["date"].iloc[[6]])


def test_predict_days_feeds_back_its_forecasts_and_widens_the_intervals():
    history = small_history()
    naive = make_forecaster("naive", DATA, ModelConfig(interval_levels=[80])).calibrate(np.log([1.1, 1.2, 1.3, 1.4]))
    ahead = naive.predict_days(history, 3)
    assert list(ahead["date"].dt.strftime("%Y-%m-%d")) == ["2024-01-11", "2024-01-12", "2024-01-13"]
    assert ahead["forecast"].tolist() == [190.0, 190.0, 190.0] and ahead["step"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(ahead["upper_80"], 190 * np.exp(math.log(1.4) * np.sqrt([1, 2, 3])))
    assert naive.predict_days(history, 0).empty


def test_future_days_get_calendar_day_types_and_unknown_travellers():
    extended = with_future_days(small_history(), 3, DataConfig(case_columns=["cases"], holiday_country="US"))
    assert extended["date"].iloc[-3:].dt.strftime("%m-%d").tolist() == ["01-11", "01-12", "01-13"]
    assert extended["day_type"].iloc[-3:].tolist() == [0, 0, 1]  # Thursday, Friday, Saturday
    assert extended["travellers"].iloc[-3:].isna().all() and extended["cases"].iloc[-1] == 9


@pytest.mark.parametrize("kind", sorted(forecaster_classes()))
def test_every_kind_fits_forecasts_saves_and_loads_the_same_forecasts(kind, tmp_path):
    history = weekly(120)
    forecaster = make_forecaster(kind, DATA, FAST_LSTM).fit(history.iloc[:100])
    assert forecaster.fitted_through == history["date"].iloc[99] and forecaster.kind == kind
    days = history["date"].iloc[100:107]
    frame = forecaster.predict(history, days)
    assert len(frame) == 7 and np.isfinite(frame["forecast"]).all() and (frame["forecast"] > 0).all()
    assert (frame["lower_95"] <= frame["lower_80"]).all() and (frame["lower_80"] <= frame["forecast"]).all()
    loaded = load_forecaster(forecaster.save(tmp_path / kind))
    pd.testing.assert_frame_equal(loaded.predict(history, days), frame)
    ahead = loaded.predict_days(history, 3)
    assert ahead["date"].iloc[0] == history["date"].iloc[-1] + pd.Timedelta(days=1) and len(ahead) == 3


@pytest.mark.parametrize("kind", ["auto_ets", "auto_theta", "auto_arima"])
def test_statistical_peers_beat_naive_on_a_weekly_series(kind):
    history = weekly(140, seed=3)
    actual = history["travellers"].to_numpy(float)[112:]
    peer = make_forecaster(kind, DATA, ModelConfig()).fit(history.iloc[:112])
    naive = make_forecaster("naive", DATA, ModelConfig()).fit(history.iloc[:112])
    error = lambda f: np.mean(np.abs(f.predict(history, history["date"].iloc[112:])["forecast"] - actual))
    assert error(peer) < 0.5 * error(naive)


def test_a_multi_day_lstm_forecasts_days_ahead_from_its_first_step():
    history = weekly(100)
    lstm = make_forecaster("lstm", DATA, FAST_LSTM.model_copy(update={"horizon": 3})).fit(history)
    ahead = lstm.predict_days(history, 4)
    assert ahead["step"].tolist() == [1, 2, 3, 4] and np.isfinite(ahead["forecast"]).all()
    first = lstm.predict(history, [history["date"].iloc[-1] + pd.Timedelta(days=1)])
    assert len(first) == 3 and first["forecast"].iloc[0] == ahead["forecast"].iloc[0]


def test_too_short_history_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="training history has 10 days; auto_ets needs at least 15"):
        make_forecaster("auto_ets", DATA, ModelConfig()).fit(small_history())


def test_forecasting_from_too_short_a_history_says_how_many_days_it_needs():
    from tasks.errors import HistoryTooShort

    history = weekly(60)
    for kind in ("seasonal_naive", "auto_ets"):
        forecaster = make_forecaster(kind, DATA, ModelConfig()).fit(history)
        with pytest.raises(HistoryTooShort, match=rf"^3 day\(s\) of history given; {kind} .*forecasts from at least \d+$"):
            forecaster.predict_days(history.tail(3), 2)
