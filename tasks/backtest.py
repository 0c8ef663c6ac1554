"""Rolling-origin backtest: every test day is forecast by a model fitted on earlier days only.

The last `test_days` days are split into folds of `refit_every` days (one fold when 0).
For each fold every forecaster is fitted on the rows before the fold's first day (its
origin; the latest `window_days` of them if set) and then forecasts each day of the fold
from the days before that day: one step ahead, with the day types of the days forecast
known in advance. All forecasters are scored on the very same days; the backtest returns
their scores, never the fitted models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from schemas.daily import DATE, TARGET, content_sha256
from tasks.config import BacktestConfig
from tasks.errors import HistoryTooShort
from tasks.evaluation import forecast_metrics, seasonal_naive_mae
from tasks.forecasters import Forecaster
from tasks.framing import target_days
from tasks.intervals import log_residuals

logger = logging.getLogger(__name__)

Fit = Callable[[pd.DataFrame], Forecaster]  # training rows -> a fitted forecaster
WarmFit = Callable[[pd.DataFrame, Forecaster | None], Forecaster]  # ... started from an earlier fit (or None)


@dataclass(frozen=True)
class Fold:
    """One fit: it saw rows [train_start, origin) and forecasts first targets `rows`."""

    index: int
    train_start: int
    origin: int
    rows: np.ndarray


def plan_folds(n_rows: int, config: BacktestConfig, horizon: int = 1) -> list[Fold]:
    """Folds over the last `test_days` first-target rows whose whole horizon lies in the data."""
    first_test = n_rows - config.test_days
    rows = np.arange(first_test, n_rows - horizon + 1)
    if first_test <= 0 or not len(rows):
        raise HistoryTooShort(f"{n_rows} days cannot hold a backtest of {config.test_days} test days (horizon {horizon})")
    size = config.refit_every or len(rows)
    folds = []
    for index, start in enumerate(range(0, len(rows), size)):
        origin = int(rows[start])
        train_start = max(0, origin - config.window_days) if config.window_days else 0
        folds.append(Fold(index, train_start, origin, rows[start : start + size]))
    return folds


def check_history_length(history: pd.DataFrame, config: BacktestConfig, min_fit_days: int, fitted: str) -> None:
    """Refuse, before anything is fitted or logged, a history too short to fit `fitted` ahead of the backtest's test days."""
    window = backtest_window(history, config)
    need = min_fit_days + config.test_days
    if len(window) >= need:
        return
    span = f" ({window[DATE].iloc[0]:%Y-%m-%d} .. {window[DATE].iloc[-1]:%Y-%m-%d})" if len(window) else ""
    raise HistoryTooShort(
        f"{len(window)} day(s) of history{span}; {fitted} needs {min_fit_days} days to fit before the "
        f"{config.test_days} backtest days (backtest.test_days), {need} in all: give a longer history or lower backtest.test_days"
    )


def backtest_window(history: pd.DataFrame, config: BacktestConfig) -> pd.DataFrame:
    """The rows the backtest uses: the first `first_days_only` days if set, else all."""
    return (history.iloc[: config.first_days_only] if config.first_days_only else history).reset_index(drop=True)


def history_before_test(history: pd.DataFrame, config: BacktestConfig, horizon: int = 1) -> pd.DataFrame:
    """The rows the first fold is fitted on."""
    window = backtest_window(history, config)
    first = plan_folds(len(window), config, horizon)[0]
    return window.iloc[first.train_start : first.origin].reset_index(drop=True)


def already_fitted(forecaster: Forecaster) -> Fit:
    """The fit of a forecaster fitted on rows before the only origin: the notebook scores the model it registers,
    and a retrain's backtest may reuse a version fitted a few days before its origin (`reusable_fit`)."""

    def fit(train: pd.DataFrame) -> Forecaster:
        if forecaster.fitted_through > train[DATE].iloc[-1]:
            raise ValueError(
                f"the forecaster was fitted through {forecaster.fitted_through.date()}, after the fold's origin "
                f"(its fit may see days through {train[DATE].iloc[-1].date()})"
            )
        return forecaster

    return fit


def warm_refits(fit: WarmFit, within_days: int) -> Fit:
    """A forecaster's fit whose every refit starts from the fold before's fit (`Forecaster.warm_from`) when that
    one's days ended at most `within_days` days before the refit's (0: never); the backtest fits folds in order."""
    earlier: list[Forecaster] = []

    def refit(train: pd.DataFrame) -> Forecaster:
        recent = earlier and within_days and 0 <= (train[DATE].iloc[-1] - earlier[0].fitted_through).days <= within_days
        earlier[:] = [fit(train, earlier[0] if recent else None)]
        return earlier[0]

    return refit


@dataclass(frozen=True)
class RegisteredFit:
    """A registered version of the configured forecaster: the last day its fit saw and those days' content hash."""

    version: str
    fitted_through: pd.Timestamp
    fitted_on_sha256: str


def reusable_fit(
    fits: list[RegisteredFit], history: pd.DataFrame, first_test_day: pd.Timestamp, within_days: int
) -> tuple[RegisteredFit | None, str]:
    """The newest fit a one-fold backtest can forecast with instead of fitting afresh, and why (for the log).

    Honest by construction: it saw no day from `first_test_day` on. It stands for a fresh fit only if its
    days ended within the `within_days` days before the first test day (0: never) and are the history's days
    as they are now (the same content hash: no day revised since, nor another history).
    """
    latest = first_test_day - pd.Timedelta(days=1)
    earliest = first_test_day - pd.Timedelta(days=within_days)
    recent = sorted(
        (fit for fit in fits if earliest <= fit.fitted_through <= latest),
        key=lambda fit: (fit.fitted_through, int(fit.version)),
        reverse=True,
    )
    if not recent:
        return None, f"no version of these settings fitted through {earliest.date()} .. {latest.date()}"
    for fit in recent:
        if content_sha256(history[history[DATE] <= fit.fitted_through]) == fit.fitted_on_sha256:
            return fit, f"v{fit.version}, fitted through {fit.fitted_through.date()}"
    return None, f"the days {', '.join(f'v{fit.version}' for fit in recent)} saw have changed since (revised)"


@dataclass(frozen=True)
class Scores:
    """One forecaster's backtest: forecasts [days, horizon], intervals, residuals, metrics."""

    forecast: np.ndarray
    intervals: dict[int, tuple[np.ndarray, np.ndarray]]  # level -> (lower, upper)
    residuals: np.ndarray  # log residuals (calibrate a final model on these)
    metrics: dict[str, float]
    coverage: dict[int, float]  # level -> share of test actuals inside the interval
    epochs: list[int]  # training epochs per fold (0 for forecasters without epochs)


@dataclass(frozen=True)
class Backtest:
    """Every forecaster scored on the same test days."""

    dates: np.ndarray  # first target day of each forecast
    fold: np.ndarray  # fold index of each forecast
    actual: np.ndarray  # [days, horizon]
    scores: dict[str, Scores]  # forecaster kind -> its scores, in the order given
    fold_metrics: pd.DataFrame  # one row per (fold, forecaster)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: s.metrics for name, s in self.scores.items()}


def run_backtest(history: pd.DataFrame, fits: dict[str, Fit], config: BacktestConfig, horizon: int = 1) -> Backtest:
    """Fit every forecaster per fold, forecast the fold's days, score them side by side."""
    history = backtest_window(history, config)
    series = history[TARGET].to_numpy(dtype=float)
    folds = plan_folds(len(history), config, horizon)
    rows = np.concatenate([f.rows for f in folds])
    fold_of = np.concatenate([np.full(len(f.rows), f.index) for f in folds])
    actual = series[target_days(rows, horizon)]
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in fits}
    epochs: dict[str, list[int]] = {name: [] for name in fits}
    for f in folds:
        train = history.iloc[f.train_start : f.origin].reset_index(drop=True)
        visible = history.iloc[f.train_start : int(f.rows.max()) + horizon].reset_index(drop=True)
        for name, fit in fits.items():
            logger.info("fold %d/%d: fitting %s on %d days", f.index + 1, len(folds), name, len(train))
            forecaster = fit(train)
            epochs[name].append(forecaster.epochs_run)
            frames[name].append(forecaster.predict(visible, history[DATE].iloc[f.rows]))
    scale = seasonal_naive_mae(series[: folds[0].origin])
    scores = {name: score(pd.concat(parts, ignore_index=True), actual, scale, epochs[name]) for name, parts in frames.items()}
    forecasts = {name: s.forecast for name, s in scores.items()}
    return Backtest(
        history[DATE].to_numpy()[rows], fold_of, actual, scores, fold_table(folds, fold_of, actual, forecasts, series)
    )


def score(frame: pd.DataFrame, actual: np.ndarray, scale: float, epochs: list[int]) -> Scores:
    """Scores of one forecaster from its forecast rows (ordered by first target day, then step)."""
    shape = actual.shape
    forecast = frame["forecast"].to_numpy(dtype=float).reshape(shape)
    levels = sorted(int(c.removeprefix("lower_")) for c in frame.columns if c.startswith("lower_"))
    intervals = {
        lv: (frame[f"lower_{lv}"].to_numpy().reshape(shape), frame[f"upper_{lv}"].to_numpy().reshape(shape)) for lv in levels
    }
    return Scores(
        forecast=forecast,
        intervals=intervals,
        residuals=log_residuals(actual, forecast),
        metrics=forecast_metrics(actual, forecast, scale),
        coverage={lv: float(np.mean((actual >= lo) & (actual <= hi))) for lv, (lo, hi) in intervals.items()},
        epochs=epochs,
    )


def fold_table(
    folds: list[Fold], fold_of: np.ndarray, actual: np.ndarray, forecasts: dict[str, np.ndarray], series: np.ndarray
) -> pd.DataFrame:
    """Metrics per fold and forecaster; MASE scaled by the seasonal-naive error before each fold."""
    rows = []
    for f in folds:
        mask = fold_of == f.index
        scale = seasonal_naive_mae(series[f.train_start : f.origin])
        for name, values in forecasts.items():
            rows.append(
                {"fold": f.index, "origin_row": f.origin, "days": int(mask.sum()), "forecaster": name}
                | forecast_metrics(actual[mask], values[mask], scale)
            )
    return pd.DataFrame(rows)
