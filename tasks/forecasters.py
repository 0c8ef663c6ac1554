"""One contract for every forecaster: the LSTM, the statistical peers and the naive baselines.

In the spirit of darts' `ForecastingModel` and statsforecast's model classes:

    forecaster = make_forecaster("auto_ets", data, model).fit(history)
    forecaster.predict(history, first_target_days)   # date, step, forecast, lower_80, upper_80, ...
    forecaster.predict_days(history, 7)              # the next 7 days after the history
    forecaster.save(folder); load_forecaster(folder)

`history` is validated daily history (consecutive days). `predict` forecasts each first
target day (and the `horizon - 1` days after it) from the rows before it only; a first
target day may be the day after the history. Intervals are split-conformal on the log
scale (tasks/intervals.py): calibrated at fit time on days the fit did not learn from,
and recalibrated on backtest residuals before a model is registered.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from schemas.daily import DATE, DAY_TYPE, TARGET
from tasks.config import DataConfig, ForecasterKind, ModelConfig
from tasks.errors import HistoryTooShort
from tasks.evaluation import SEASON
from tasks.intervals import conformal_quantiles, interval_bounds, log_residuals

if TYPE_CHECKING:
    from tasks.network import EpochReport

SPEC_FILE = "forecaster.json"
CALIBRATION_DAYS = 28  # in-sample one-step residuals that calibrate a fit without held-out days


def with_future_days(history: pd.DataFrame, days: int, data: DataConfig) -> pd.DataFrame:
    """`history` plus `days` rows after it: day types from the calendar, travellers unknown (NaN),
    other columns carried forward from the last day."""
    from tasks.calendar import derive_day_types

    if days <= 0:
        return history
    dates = pd.Series(pd.date_range(history[DATE].iloc[-1] + pd.Timedelta(days=1), periods=days))
    carried = {column: history[column].iloc[-1] for column in history.columns if column not in (DATE, TARGET, DAY_TYPE)}
    future = pd.DataFrame({DATE: dates}).assign(**carried)
    future[TARGET] = np.nan
    future[DAY_TYPE] = derive_day_types(dates, data.holiday_country, data.holiday_subdivision).to_numpy()
    return pd.concat([history, future[history.columns]], ignore_index=True)


class Forecaster(ABC):
    """Fit on history, forecast travellers with intervals, save and load."""

    kind: ClassVar[ForecasterKind]
    epochs_run: int = 0  # training epochs of the last fit (networks only)
    pretrained_on: list[str] | None = None  # series the last fit's networks were pretrained on (networks only)

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None):
        self.data, self.model = data, model
        self.report = report  # called after every training epoch (forecasters that train in epochs)
        self.losses: dict[str, list[float]] = {}  # per-epoch training losses of the last fit (networks only)
        self.calibration = np.zeros(0)  # log residuals on days the fit did not learn from
        self.fitted_through: pd.Timestamp | None = None  # the last day the fit saw
        self.registered_as: tuple[str, str, str] | None = None  # (store, model, version) it was loaded from

    @property
    def horizon(self) -> int:
        return self.model.horizon

    @property
    @abstractmethod
    def min_history_days(self) -> int:
        """Fewest days of history before a first target day that a forecast needs."""

    @property
    def min_fit_days(self) -> int:
        """Fewest days `fit` accepts."""
        return self.min_history_days + self.horizon

    def fit(self, history: pd.DataFrame) -> Forecaster:
        """Fit on every row of `history`; calibrate the intervals; return self."""
        if len(history) < self.min_fit_days:
            raise HistoryTooShort(
                f"training history has {len(history)} days; {self.describe()} needs at least {self.min_fit_days}"
            )
        self.calibration = self._fit(history)
        self.fitted_through = pd.Timestamp(history[DATE].iloc[-1])
        return self

    def warm_from(self, earlier: Forecaster | None) -> Forecaster:
        """Start the next fit from `earlier`, these settings fitted on earlier days (`model.warm_start_days`; None:
        afresh); a forecaster without trained weights fits afresh whatever it is given. Returns self."""
        return self

    @abstractmethod
    def _fit(self, history: pd.DataFrame) -> np.ndarray:
        """Fit; return log residuals of forecasts for days the fit did not learn from (or in-sample ones)."""

    @abstractmethod
    def forecast_rows(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        """Travellers [len(first_targets), horizon] for first target rows of `history`, from the rows before each."""

    def calibrate(self, residuals: np.ndarray) -> Forecaster:
        """Calibrate the intervals on these log residuals (e.g. the backtest's); return self."""
        self.calibration = np.asarray(residuals, dtype=float).ravel()
        return self

    def half_widths(self) -> dict[int, float]:
        """Conformal half-width on the log scale per interval level."""
        return conformal_quantiles(self.calibration, self.model.interval_levels)

    def predict(self, history: pd.DataFrame, first_target_days) -> pd.DataFrame:
        """Forecast rows (date, step, forecast, lower_*/upper_*) for each first target day, step by step.

        Days after the history are added from the calendar, so the day after it can be a first target.
        """
        days = pd.DatetimeIndex(first_target_days)
        past_end = (days.max() - history[DATE].iloc[-1]).days + self.horizon - 1 if len(days) else 0
        extended = with_future_days(history.reset_index(drop=True), max(past_end, 0), self.data)
        rows = extended[DATE].searchsorted(days)
        if len(rows) and (
            rows.min() < self.min_history_days or not extended[DATE].iloc[rows].reset_index(drop=True).equals(pd.Series(days))
        ):
            raise ValueError(
                f"{self.describe()} forecasts days with at least {self.min_history_days} days of history before them "
                f"(history {history[DATE].iloc[0].date()} .. {history[DATE].iloc[-1].date()})"
            )
        return self.forecast_frame(extended[DATE].to_numpy()[rows], self.forecast_rows(extended, rows))

    def forecast_frame(
        self, first_target_days: np.ndarray, forecasts: np.ndarray, steps_ahead: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Long table from [n, horizon] forecasts; intervals widen with sqrt(steps ahead)."""
        n, horizon = forecasts.shape
        steps = np.tile(np.arange(1, horizon + 1), n)
        ahead = steps if steps_ahead is None else np.asarray(steps_ahead)
        dates = pd.DatetimeIndex(np.repeat(first_target_days, horizon)) + pd.to_timedelta(steps - 1, unit="D")
        frame = pd.DataFrame({"date": dates, "step": ahead, "forecast": forecasts.ravel()})
        for level, width in self.half_widths().items():
            frame[f"lower_{level}"], frame[f"upper_{level}"] = interval_bounds(frame["forecast"].to_numpy(), width, ahead)
        return frame

    def require_history(self, history: pd.DataFrame) -> None:
        """Refuse, by its numbers, a history too short to forecast from."""
        if len(history) < self.min_history_days:
            raise HistoryTooShort(
                f"{len(history)} day(s) of history given; {self.describe()} forecasts from at least {self.min_history_days}"
            )

    def predict_days(self, history: pd.DataFrame, days: int) -> pd.DataFrame:
        """The next `days` days after the history, one at a time, each forecast fed back as that day's travellers.

        Case counts are carried forward from the last stored day; day types come from the
        calendar; intervals widen with the square root of the days ahead.
        """
        self.require_history(history)
        context = self.context_days
        frame = (history.tail(context) if context else history).reset_index(drop=True)
        forecasts = []
        for _ in range(days):
            extended = with_future_days(frame, self.horizon, self.data)  # a sample's targets span the horizon
            value = float(self.forecast_rows(extended, np.array([len(frame)]))[0, 0])
            extended.loc[len(frame), TARGET] = max(0, round(value))
            forecasts.append(value)
            frame = extended.iloc[: len(frame) + 1].astype(history.dtypes.to_dict())
        dates = frame[DATE].to_numpy()[-days:] if days else np.array([], dtype="datetime64[ns]")
        return self.forecast_frame(dates, np.array(forecasts).reshape(-1, 1), np.arange(1, days + 1))

    @property
    def context_days(self) -> int | None:
        """Days of history a forecast depends on (None: all of it).

        The default is a tail long enough that every input is as with the whole history (the
        LSTM's same-weekday reference looks four weeks back, its case counts one week).
        """
        return self.min_history_days + SEASON * 8

    def describe(self) -> str:
        return self.kind

    def fit_metrics(self) -> dict[str, float]:
        """Figures of the last fit worth logging beside it (e.g. combination weights)."""
        return {}

    def save(self, directory: Path) -> Path:
        """Write the forecaster into `directory` (created); load it with `load_forecaster`."""
        directory.mkdir(parents=True, exist_ok=True)
        spec = {
            "kind": self.kind,
            "data": self.data.model_dump(mode="json"),
            "model": self.model.model_dump(mode="json"),
            "calibration": [float(r) for r in self.calibration],
            "fitted_through": self.fitted_through.strftime("%Y-%m-%d"),
        }
        (directory / SPEC_FILE).write_text(json.dumps(spec, indent=1))
        self._save(directory)
        return directory

    def _save(self, directory: Path) -> None:
        """Write what the fit learned (nothing for forecasters that learn nothing)."""

    def _load(self, directory: Path) -> None:
        """Read what `_save` wrote."""


class NaiveForecaster(Forecaster):
    """Day t as the actual value `lag` days earlier (seen from the origin): naive (1) or seasonal naive (7)."""

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None, lag: int = 1):
        super().__init__(data, model, report)
        self.lag = lag

    @property
    def min_history_days(self) -> int:
        return self.lag

    def _fit(self, history: pd.DataFrame) -> np.ndarray:
        actual = history[TARGET].to_numpy(dtype=float)
        rows = np.arange(max(self.lag, len(actual) - CALIBRATION_DAYS), len(actual))
        return log_residuals(actual[rows], self.forecast_rows(history, rows)[:, 0])

    def forecast_rows(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        """For h steps past the origin: the latest value a multiple of `lag` days back, not after the origin."""
        actual = history[TARGET].to_numpy(dtype=float)
        steps = np.arange(1, self.horizon + 1)
        back = self.lag * np.ceil(steps / self.lag).astype(int)
        return actual[np.asarray(first_targets)[:, None] - 1 + steps[None, :] - back[None, :]]


class Naive(NaiveForecaster):
    kind = "naive"

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None):
        super().__init__(data, model, report, lag=1)


class SeasonalNaive(NaiveForecaster):
    kind = "seasonal_naive"

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None):
        super().__init__(data, model, report, lag=SEASON)


FITTED_KEPT = 128  # statsforecast fits kept per process (a benchmark's many folds stay bounded)
_fitted: OrderedDict[tuple[str, bytes], object] = OrderedDict()


def series_key(history: pd.DataFrame, end: int | None = None) -> bytes:
    """Travellers of the first `end` rows (all with None) as a kept fit's key: float64 bytes."""
    return history[TARGET].to_numpy(dtype=float)[:end].tobytes()


def fit_statsforecast(model_name: str, series: bytes):
    """A statsforecast model fitted on a float64 series (its bytes), weekly season."""
    import statsforecast.models

    return getattr(statsforecast.models, model_name)(season_length=SEASON).fit(y=np.frombuffer(series))


def fitted_statsforecast(model_name: str, series: bytes):
    """`fit_statsforecast`, kept for the process.

    The combined LSTM refits its peers on the very rows the backtest's compared peers were just
    fitted on, its helper process fits them ahead (tasks/peer_fits.py), and a fitted model is
    only read afterwards (`forward`).
    """
    if not is_fitted(model_name, series):
        keep_fitted(model_name, series, fit_statsforecast(model_name, series))
    _fitted.move_to_end((model_name, series))
    return _fitted[(model_name, series)]


def is_fitted(model_name: str, series: bytes) -> bool:
    return (model_name, series) in _fitted


def keep_fitted(model_name: str, series: bytes, model) -> None:
    """Keep a fit for `fitted_statsforecast`, dropping the least recently used beyond FITTED_KEPT."""
    _fitted[(model_name, series)] = model
    _fitted.move_to_end((model_name, series))
    while len(_fitted) > FITTED_KEPT:
        _fitted.popitem(last=False)


def forget_fitted() -> None:
    """Drop every kept fit (tests that compare two ways of fitting)."""
    _fitted.clear()


class StatsForecaster(Forecaster):
    """A statsforecast model with a weekly season, fitted on travellers alone.

    Later days are forecast by applying the fitted model to the longer series
    (statsforecast's `forward`), as its `cross_validation(refit=False)` does.
    """

    MODELS: ClassVar[dict[str, str]] = {"auto_ets": "AutoETS", "auto_theta": "AutoTheta", "auto_arima": "AutoARIMA"}
    MODEL_FILE = "statsforecast.joblib"

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None):
        super().__init__(data, model, report)
        self.fitted = None

    @property
    def min_history_days(self) -> int:
        return 2 * SEASON

    def _fit(self, history: pd.DataFrame) -> np.ndarray:
        actual = history[TARGET].to_numpy(dtype=float)
        self.fitted = fitted_statsforecast(self.MODELS[self.kind], series_key(history))
        in_sample = self.fitted.predict_in_sample()["fitted"]
        return log_residuals(actual[-CALIBRATION_DAYS:], in_sample[-CALIBRATION_DAYS:])

    def forecast_rows(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        actual = history[TARGET].to_numpy(dtype=float)
        return np.array([self.fitted.forward(y=actual[:row], h=self.horizon)["mean"] for row in first_targets]).reshape(
            -1, self.horizon
        )

    def predict_days(self, history: pd.DataFrame, days: int) -> pd.DataFrame:
        """The model's own multi-step forecast from the whole history (no feeding back)."""
        self.require_history(history)
        actual = history[TARGET].to_numpy(dtype=float)
        mean = self.fitted.forward(y=actual, h=days)["mean"] if days else np.zeros(0)
        dates = pd.date_range(history[DATE].iloc[-1] + pd.Timedelta(days=1), periods=days).to_numpy()
        return self.forecast_frame(dates, np.asarray(mean, dtype=float).reshape(-1, 1), np.arange(1, days + 1))

    def _save(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.fitted, directory / self.MODEL_FILE)

    def _load(self, directory: Path) -> None:
        import joblib

        self.fitted = joblib.load(directory / self.MODEL_FILE)


class AutoEts(StatsForecaster):
    kind = "auto_ets"


class AutoTheta(StatsForecaster):
    kind = "auto_theta"


class AutoArima(StatsForecaster):
    kind = "auto_arima"


def forecaster_classes() -> dict[str, type[Forecaster]]:
    """Every kind by its config name."""
    from tasks.lstm import LstmForecaster

    return {cls.kind: cls for cls in (LstmForecaster, AutoEts, AutoTheta, AutoArima, SeasonalNaive, Naive)}


def make_forecaster(kind: str, data: DataConfig, model: ModelConfig, report: EpochReport | None = None) -> Forecaster:
    """An unfitted forecaster of this kind; its model config says so (`model.kind`), whatever kind `model` was for."""
    return forecaster_classes()[kind](data, model.model_copy(update={"kind": kind}), report)


# Settings added later that change how a saved fit forecasts: a version saved before one existed forecasts as it
# did when it was backtested and registered, not as the new default would.
SAVED_WITHOUT: dict[str, Any] = {
    "rolling_weights": False,
    "holiday_memory": False,
    "holidays_as_normal_days": False,
    "days_unlike_their_weekday": False,
    "held_out_after_surprise": [],
}


def load_forecaster(directory: Path) -> Forecaster:
    """A fitted forecaster from the folder `Forecaster.save` wrote."""
    spec = json.loads((directory / SPEC_FILE).read_text())
    model = ModelConfig.model_validate(SAVED_WITHOUT | spec["model"])
    forecaster = make_forecaster(spec["kind"], DataConfig.model_validate(spec["data"]), model)
    forecaster.calibration = np.asarray(spec["calibration"], dtype=float)
    forecaster.fitted_through = pd.Timestamp(spec["fitted_through"])
    forecaster._load(directory)
    return forecaster
