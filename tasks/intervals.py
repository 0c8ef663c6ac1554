"""Split-conformal prediction intervals on the log scale: forecast x exp(+-q).

Residuals are log(actual / forecast) on days the model was not fitted on (a held-out
validation slice, or backtest days). For coverage `level` % with n residuals, q is the
ceil((n + 1) * level / 100)-th smallest |residual|, the finite-sample conformal quantile; with
too few residuals for that rank the interval is unbounded.
"""

from __future__ import annotations

import math

import numpy as np


def log_residuals(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """log(actual / forecast), flattened; forecasts below one traveller count as one."""
    actual, forecast = np.ravel(actual).astype(float), np.ravel(forecast).astype(float)
    return np.log(np.maximum(actual, 1.0)) - np.log(np.maximum(forecast, 1.0))


def conformal_quantiles(residuals: np.ndarray, levels: list[int]) -> dict[int, float]:
    """Half-width on the log scale for each coverage level (in percent)."""
    spread = np.sort(np.abs(np.asarray(residuals, dtype=float)[np.isfinite(residuals)]))
    quantiles = {}
    for level in levels:
        rank = -(-(len(spread) + 1) * level // 100)  # ceil in integers: no float rounding at exact ranks
        quantiles[level] = float(spread[rank - 1]) if 0 < rank <= len(spread) else math.inf
    return quantiles


def interval_bounds(forecast: np.ndarray, half_width: float, steps_ahead: np.ndarray | int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) around `forecast`; a forecast k steps ahead widens by sqrt(k)."""
    width = half_width * np.sqrt(np.asarray(steps_ahead, dtype=float))
    forecast = np.asarray(forecast, dtype=float)
    with np.errstate(over="ignore"):
        return forecast * np.exp(-width), forecast * np.exp(width)
