"""Forecast accuracy in real units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SEASON = 7  # days in the weekly cycle of travel
METRICS = ["mae", "rmse", "mape", "smape", "mase", "r2"]


def seasonal_naive_mae(train_actual: np.ndarray, season: int = SEASON) -> float:
    """In-sample MAE of the seasonal-naive forecast: the scale of MASE."""
    values = np.asarray(train_actual, dtype=float)
    return float(np.mean(np.abs(values[season:] - values[:-season])))


def forecast_metrics(actual: np.ndarray, predicted: np.ndarray, mase_scale: float) -> dict[str, float]:
    """RMSE, MAE, MAPE (%), sMAPE (%), R² and MASE of `predicted` against `actual`."""
    actual, predicted = np.ravel(actual).astype(float), np.ravel(predicted).astype(float)
    error = predicted - actual
    mae = float(np.mean(np.abs(error)))
    total = float(np.sum((actual - actual.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": mae,
        "mape": float(np.mean(np.abs(error) / np.abs(actual)) * 100) if np.all(actual != 0) else math.nan,
        "smape": float(np.mean(2 * np.abs(error) / (np.abs(actual) + np.abs(predicted))) * 100)
        if np.all(np.abs(actual) + np.abs(predicted) > 0)
        else math.nan,
        "r2": 1 - float(np.sum(error**2)) / total if total > 0 else math.nan,
        "mase": mae / mase_scale if mase_scale > 0 else math.nan,
    }


def metrics_table(scores: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per forecaster, one column per metric."""
    return pd.DataFrame(scores).T.rename_axis("forecaster")[METRICS]


def format_metrics(table: pd.DataFrame) -> str:
    """The metrics table as text: counts without decimals, ratios with three."""
    formats = {"rmse": "{:,.0f}", "mae": "{:,.0f}", "mape": "{:.2f}%", "smape": "{:.2f}%", "r2": "{:.3f}", "mase": "{:.3f}"}
    shown = table.copy().astype(object)
    for column, pattern in formats.items():
        shown[column] = [pattern.format(v) for v in table[column]]
    return shown.to_string()
