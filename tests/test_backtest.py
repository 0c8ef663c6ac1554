"""The rolling-origin backtest: folds, no look-ahead, metrics side by side, conformal intervals."""

import numpy as np
import pandas as pd
import pytest

from schemas.daily import content_sha256
from tasks.backtest import (
    RegisteredFit,
    already_fitted,
    history_before_test,
    plan_folds,
    reusable_fit,
    run_backtest,
    warm_refits,
)
from tasks.config import BacktestConfig, DataConfig, ModelConfig
from tasks.forecasters import Forecaster, make_forecaster
from tasks.lstm import LstmForecaster

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])


def weekly_series(days: int, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Weekdays busy, weekends quiet, a slow trend; cumulative cases growing."""
    rng = np.random.default_rng(seed)
    day = np.arange(days)
    dates = pd.date_range("2022-01-03", periods=days)  # a Monday
    weekend = dates.day_of_week >= 5
    travellers = (1_000_000 + 500 * day) * np.where(weekend, 0.55, 1.0) * (1 + noise * rng.standard_normal(days))
    return pd.DataFrame(
        {
            "date": dates,
            "travellers": travellers.round().astype(np.int64),
            "cases": (day * 40 + day**2).astype(np.int64),
            "day_type": weekend.astype(np.int64),
        }
    )


def test_folds_cover_the_last_days_and_refit_on_schedule():
    folds = plan_folds(100, BacktestConfig(test_days=10, refit_every=4))
    assert [(f.origin, f.rows.tolist()) for f in folds] == [(90, [90, 91, 92, 93]), (94, [94, 95, 96, 97]), (98, [98, 99])]
    assert all(f.train_start == 0 for f in folds)
    once = plan_folds(100, BacktestConfig(test_days=10, refit_every=0, window_days=30), horizon=2)
    assert [(f.train_start, f.origin, f.rows[[0, -1]].tolist()) for f in once] == [(60, 90, [90, 98])]
    with pytest.raises(ValueError, match="cannot hold a backtest of 100 test days"):
        plan_folds(100, BacktestConfig(test_days=100))


class YesterdaySpy(Forecaster):
    """Forecasts yesterday's value with fixed calibration residuals, recording what it was given."""

    kind = "naive"

    def __init__(self, log: list):
        super().__init__(DATA, ModelConfig())
        self.log = log

    @property
    def min_history_days(self) -> int:
        return 1

    def _fit(self, history: pd.DataFrame) -> np.ndarray:
        self.log.append(("fit", history["date"].max()))
        return np.log([1.1, 1 / 1.2, 1.3, 1 / 1.4])  # |residual| 0.095, 0.182, 0.262, 0.336

    def forecast_rows(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        self.log.append(("predict", history["date"].iloc[first_targets].min()))
        return history["travellers"].to_numpy(float)[first_targets - 1][:, None]


def spy_fits(log: list) -> dict:
    return {"spy": lambda train: YesterdaySpy(log).fit(train), **baseline_fits()}


def baseline_fits() -> dict:
    return {
        kind: (lambda train, kind=kind: make_forecaster(kind, DATA, ModelConfig()).fit(train))
        for kind in ("naive", "seasonal_naive")
    }


def test_each_fit_sees_only_days_before_its_origin_and_every_forecaster_shares_the_days():
    history = weekly_series(60, noise=0.05)
    log: list = []
    result = run_backtest(history, spy_fits(log), BacktestConfig(test_days=9, refit_every=3))
    fits = [date for kind, date in log if kind == "fit"]
    firsts = [date for kind, date in log if kind == "predict"]
    assert [(f + pd.Timedelta(days=1)) for f in fits] == firsts == list(history["date"].iloc[[51, 54, 57]])
    np.testing.assert_array_equal(result.scores["spy"].forecast, result.scores["naive"].forecast)
    assert result.metrics["spy"] == result.metrics["naive"]
    assert list(result.fold) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert set(result.fold_metrics["forecaster"]) == {"spy", "naive", "seasonal_naive"} and len(result.fold_metrics) == 9
    # 80%: rank ceil(5 * 80 / 100) = 4 of the 4 calibration residuals -> the widest, log 1.4.
    lower, upper = result.scores["spy"].intervals[80]
    np.testing.assert_allclose(upper / result.scores["spy"].forecast, 1.4)
    assert np.isinf(result.scores["spy"].intervals[95][1]).all()  # rank 5 of 4: unbounded
    inside = (result.actual >= lower) & (result.actual <= upper)
    assert result.scores["spy"].coverage[80] == pytest.approx(inside.mean())


def test_metrics_are_computed_on_the_same_days_with_the_in_sample_scale():
    history = weekly_series(40)
    result = run_backtest(history, spy_fits([]), BacktestConfig(test_days=5, first_days_only=30))
    actual = history["travellers"].to_numpy(float)
    np.testing.assert_array_equal(result.actual[:, 0], actual[25:30])  # first_days_only cuts the data at 30
    np.testing.assert_array_equal(result.scores["seasonal_naive"].forecast[:, 0], actual[18:23])
    scale = np.mean(np.abs(actual[7:25] - actual[:18]))
    assert result.metrics["naive"]["mase"] == pytest.approx(np.mean(np.abs(actual[24:29] - actual[25:30])) / scale)


def test_an_already_fitted_forecaster_is_scored_only_on_the_rows_it_was_fitted_before():
    history = weekly_series(40)
    config = BacktestConfig(test_days=5, refit_final=False)
    fitted = YesterdaySpy([]).fit(history_before_test(history, config))
    assert fitted.fitted_through == history["date"].iloc[34]
    result = run_backtest(history, {"spy": already_fitted(fitted)}, config)
    np.testing.assert_array_equal(result.scores["spy"].forecast[:, 0], history["travellers"].to_numpy(float)[34:39])
    # A fit that ended days before the origin (a registered version reused) forecasts from the days it is shown.
    longer = weekly_series(42)
    later = run_backtest(longer, {"spy": already_fitted(fitted)}, config)
    np.testing.assert_array_equal(later.scores["spy"].forecast[:, 0], longer["travellers"].to_numpy(float)[36:41])
    with pytest.raises(
        ValueError, match=r"fitted through 2022-02-06, after the fold's origin \(its fit may see days through 2022-02-05"
    ):
        run_backtest(history.iloc[:39], {"spy": already_fitted(fitted)}, config)


@pytest.mark.parametrize("within_days, warm", [(7, True), (6, False), (0, False)])
def test_each_refit_starts_from_the_fold_before_when_its_days_ended_within_the_warm_start_days(within_days, warm):
    made, starts = [], []

    def fit(train: pd.DataFrame, start: Forecaster | None) -> Forecaster:
        starts.append(start)
        made.append(make_forecaster("seasonal_naive", DATA, ModelConfig()).fit(train))
        return made[-1]

    run_backtest(
        weekly_series(60), {"seasonal_naive": warm_refits(fit, within_days)}, BacktestConfig(test_days=21, refit_every=7)
    )
    assert len(made) == 3  # folds 7 days apart
    assert starts == ([None, *made[:-1]] if warm else [None, None, None])


def test_a_registered_fit_is_reused_only_if_it_ended_just_before_the_test_days_on_the_days_stored_now():
    history = weekly_series(40)  # 2022-01-03 .. 2022-02-11
    day = pd.Timestamp

    def fit(version: str, through: str, days: pd.DataFrame = history) -> RegisteredFit:
        return RegisteredFit(version, day(through), content_sha256(days[days["date"] <= day(through)]))

    fits = [fit("3", "2022-01-28"), fit("4", "2022-01-31"), fit("5", "2022-01-31"), fit("6", "2022-02-06")]
    first_test = day("2022-02-04")  # v6 saw test days; v5 is v4's days registered again, the newer
    assert reusable_fit(fits, history, first_test, 7) == (fits[2], "v5, fitted through 2022-01-31")
    assert reusable_fit(fits, history, first_test, 3) == (
        None,
        "no version of these settings fitted through 2022-02-01 .. 2022-02-03",
    )
    assert reusable_fit(fits, history, first_test, 4)[0] == fits[2]
    assert reusable_fit(fits, history, first_test, 0)[0] is None
    # A day v4 and v5 saw was revised since: v3 (older, its days unchanged) instead; then one v3 saw too.
    revised = history.assign(travellers=history["travellers"].where(history["date"] != day("2022-01-30"), 1))
    assert reusable_fit(fits, revised, first_test, 7) == (fits[0], "v3, fitted through 2022-01-28")
    revised.loc[0, "travellers"] = 1
    assert reusable_fit(fits, revised, first_test, 7) == (None, "the days v5, v4, v3 saw have changed since (revised)")
    assert reusable_fit(fits, weekly_series(40, noise=0.01), first_test, 7)[0] is None  # nor another series' days


TINY = ModelConfig(
    lags=7, validation_days=14, ensemble=1, lstm_units=[4], dense_units=[4], epochs=3, early_stopping_patience=0, weighting_days=0
)


def lstm_fits(model: ModelConfig) -> dict:
    return {"lstm": lambda train: LstmForecaster(DATA, model).fit(train)}


@pytest.mark.parametrize("encoding", ["seasonal", "notebook"])
def test_later_days_never_change_earlier_forecasts(encoding):
    """Rows after a forecast day are garbled: every forecast made before them stays identical."""
    config = TINY.model_copy(update={"encoding": encoding})
    history = weekly_series(90, noise=0.03)
    garbled = history.copy()
    garbled.loc[80:, "travellers"] *= 100  # from day 80 on: a different world
    garbled.loc[80:, "cases"] *= 100
    garbled.loc[80:, "day_type"] = 2
    backtest = BacktestConfig(test_days=14, refit_every=7)  # folds: origin 76 (days 76..82), origin 83
    clean = run_backtest(history, lstm_fits(config), backtest).scores["lstm"].forecast
    changed = run_backtest(garbled, lstm_fits(config), backtest).scores["lstm"].forecast
    np.testing.assert_array_equal(clean[:4], changed[:4])  # days 76..79
    assert not np.array_equal(clean[4:], changed[4:])  # the test can fail


def test_default_model_beats_naive_on_a_clean_weekly_series():
    history = weekly_series(300, noise=0.02, seed=1)
    result = run_backtest(history, lstm_fits(ModelConfig()) | baseline_fits(), BacktestConfig(test_days=28))
    assert result.metrics["lstm"]["mae"] < result.metrics["naive"]["mae"]
    assert result.metrics["lstm"]["mase"] < 1.5
