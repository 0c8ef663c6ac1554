"""Rolling-origin backtest: every test day is forecast by a model fitted on earlier days only.

The last `test_days` days are split into folds of `refit_every` days (one fold when 0).
For each fold the forecaster is fitted on the rows before the fold's first day (its
origin; the latest `window_days` of them if set) and then forecasts each day of the fold
from the days before that day: one step ahead, with the day types of the days forecast
known in advance. Baselines are scored on the very same days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from schemas.daily import DATE, TARGET
from tasks.config import BacktestConfig, DataConfig, ModelConfig
from tasks.evaluation import BASELINES, forecast_metrics, seasonal_naive_mae
from tasks.intervals import conformal_quantiles, interval_bounds, log_residuals


class Predictor(Protocol):
    """A fitted forecaster, as the backtest uses it."""

    calibration: np.ndarray  # held-out log residuals, for its prediction intervals

    def predict(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        """Travellers [len(first_targets), horizon]; may read only rows before each first target."""


Fit = Callable[[pd.DataFrame], Predictor]


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
        raise ValueError(f"{n_rows} days cannot hold a backtest of {config.test_days} test days (horizon {horizon})")
    size = config.refit_every or len(rows)
    folds = []
    for index, start in enumerate(range(0, len(rows), size)):
        origin = int(rows[start])
        train_start = max(0, origin - config.window_days) if config.window_days else 0
        folds.append(Fold(index, train_start, origin, rows[start : start + size]))
    return folds


@dataclass(frozen=True)
class Backtest:
    """Forecasts of every forecaster on the same test days, their intervals and metrics."""

    dates: np.ndarray  # first target day of each forecast
    fold: np.ndarray  # fold index of each forecast
    actual: np.ndarray  # [days, horizon]
    forecasts: dict[str, np.ndarray]  # name -> [days, horizon]; "model" first
    intervals: dict[float, tuple[np.ndarray, np.ndarray]]  # level -> (lower, upper) of the model
    residuals: np.ndarray  # the model's log residuals on the test days (calibrate the final model on these)
    metrics: dict[str, dict[str, float]]  # name -> overall metrics
    fold_metrics: pd.DataFrame  # one row per (fold, forecaster)
    coverage: dict[float, float]  # level -> share of test actuals inside the model's interval
    epochs: list[int] = field(default_factory=list)
    last_fit: Predictor | None = None  # the last fold's fitted forecaster (the notebook registers it)


def run_backtest(
    history: pd.DataFrame, fit: Fit, config: BacktestConfig, horizon: int = 1,
    extra: dict[str, np.ndarray] | None = None,
) -> Backtest:
    """Fit per fold, forecast the fold's days, score the model and the baselines side by side.

    `extra` adds forecasts made elsewhere (e.g. statistical peers) for the same days.
    """
    history = history.iloc[: config.history_days] if config.history_days else history
    history = history.reset_index(drop=True)
    actual_series = history[TARGET].to_numpy(dtype=float)
    folds = plan_folds(len(history), config, horizon)
    rows = np.concatenate([f.rows for f in folds])
    fold_of = np.concatenate([np.full(len(f.rows), f.index) for f in folds])
    steps = np.arange(horizon)
    actual = actual_series[rows[:, None] + steps]

    model_forecast, lower, upper, epochs = [], {lv: [] for lv in config.interval_levels}, {lv: [] for lv in config.interval_levels}, []
    for f in folds:
        predictor = fit(history.iloc[f.train_start : f.origin].reset_index(drop=True))
        epochs.append(getattr(predictor, "epochs_run", 0))
        visible = history.iloc[f.train_start : int(f.rows.max()) + horizon].reset_index(drop=True)
        forecast = predictor.predict(visible, f.rows - f.train_start)
        model_forecast.append(forecast)
        quantiles = conformal_quantiles(predictor.calibration, config.interval_levels)
        for level, q in quantiles.items():
            low, high = interval_bounds(forecast, q)
            lower[level].append(low)
            upper[level].append(high)

    forecasts = {"model": np.concatenate(model_forecast)}
    forecasts |= {name: b.fit(actual_series).predict(rows, horizon) for name, b in BASELINES.items()}
    forecasts |= extra or {}
    intervals = {lv: (np.concatenate(lower[lv]), np.concatenate(upper[lv])) for lv in config.interval_levels}
    scale = seasonal_naive_mae(actual_series[: folds[0].origin])
    metrics = {name: forecast_metrics(actual, values, scale) for name, values in forecasts.items()}
    coverage = {lv: float(np.mean((actual >= lo) & (actual <= hi))) for lv, (lo, hi) in intervals.items()}
    return Backtest(
        dates=history[DATE].to_numpy()[rows],
        fold=fold_of,
        actual=actual,
        forecasts=forecasts,
        intervals=intervals,
        residuals=log_residuals(actual, forecasts["model"]),
        metrics=metrics,
        fold_metrics=fold_table(folds, fold_of, actual, forecasts, actual_series),
        coverage=coverage,
        epochs=epochs,
        last_fit=predictor,
    )


def fold_table(folds: list[Fold], fold_of: np.ndarray, actual: np.ndarray, forecasts: dict[str, np.ndarray], series: np.ndarray) -> pd.DataFrame:
    """Metrics per fold and forecaster; MASE scaled by the seasonal-naive error before each fold."""
    rows = []
    for f in folds:
        mask = fold_of == f.index
        scale = seasonal_naive_mae(series[f.train_start : f.origin])
        for name, values in forecasts.items():
            rows.append({"fold": f.index, "origin_row": f.origin, "days": int(mask.sum()), "forecaster": name}
                        | forecast_metrics(actual[mask], values[mask], scale))
    return pd.DataFrame(rows)


IN_SAMPLE_CALIBRATION_DAYS = 28  # interval calibration of a fit without validation days (the recipe)


@dataclass
class LstmPredictor:
    """A fitted encoder and network; forecasts in travellers."""

    encoder: object
    network: object
    config: ModelConfig
    calibration: np.ndarray
    epochs_run: int
    losses: dict[str, list[float]]

    def predict(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        from tasks.dataset import forecast_travellers
        from tasks.model import predict_outputs

        outputs = lambda samples: predict_outputs(self.network, samples, self.config.horizon)  # noqa: E731
        return forecast_travellers(self.encoder, outputs, history, first_targets, self.config)


def fit_lstm(history: pd.DataFrame, data: DataConfig, config: ModelConfig, report=None) -> LstmPredictor:
    """Fit encoder and network on `history`; calibrate intervals on the held-out validation days.

    Without validation days (the notebook recipe) the last training days stand in: their
    residuals are in-sample, so those intervals are optimistic.
    """
    from tasks.dataset import fit_encoding, frame_training
    from tasks.model import fit_model, predict_outputs, raise_if_diverged

    encoder = fit_encoding(history, data, config)
    dataset = frame_training(history, encoder, config)
    network, losses = fit_model(config, dataset.train, dataset.validation, report)
    raise_if_diverged(losses)
    held_out = dataset.validation if len(dataset.validation) else _last(dataset.train, IN_SAMPLE_CALIBRATION_DAYS)
    forecast = encoder.decode(predict_outputs(network, held_out, config.horizon), held_out.reference)
    actual = encoder.decode(held_out.y, held_out.reference)
    return LstmPredictor(encoder, network, config, log_residuals(actual, forecast), len(losses["loss"]), losses)


def _last(samples, n: int):
    from tasks.framing import select

    return select(samples, np.arange(len(samples)) >= len(samples) - n)


def lstm_fit(data: DataConfig, config: ModelConfig) -> Fit:
    """The backtest's fit function for the configured LSTM."""
    return lambda train: fit_lstm(train, data, config)
