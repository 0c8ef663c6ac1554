"""Supervised framing: lagged inputs and future targets, as the notebook's series_to_supervised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def series_to_supervised(values: np.ndarray, n_in: int = 1, n_out: int = 1, dropnan: bool = True) -> pd.DataFrame:
    """Columns var{j}(t-i) for i = n_in..1, then var{j}(t), var{j}(t+i) for i = 1..n_out-1."""
    data = pd.DataFrame(np.asarray(values, dtype=float))
    n_vars = data.shape[1]
    shifts = list(range(n_in, 0, -1)) + [-i for i in range(n_out)]
    columns = [data.shift(shift) for shift in shifts]
    names = [
        f"var{j + 1}(t{'' if shift == 0 else f'-{shift}' if shift > 0 else f'+{-shift}'})"
        for shift in shifts
        for j in range(n_vars)
    ]
    framed = pd.concat(columns, axis=1)
    framed.columns = names
    return framed.dropna() if dropnan else framed


@dataclass(frozen=True)
class Samples:
    """LSTM inputs [samples, timesteps, features], targets [samples, horizon], first target row of each."""

    X: np.ndarray
    y: np.ndarray
    target_rows: np.ndarray


def frame_samples(values: np.ndarray, lags: int, horizon: int, target_index: int = 0) -> Samples:
    """Frame a [rows, features] array into LSTM samples predicting `horizon` days of one feature."""
    values = np.asarray(values, dtype=float)
    n_rows, n_features = values.shape
    framed = series_to_supervised(values, lags, horizon).to_numpy()
    X = framed[:, : lags * n_features].reshape(-1, lags, n_features)
    future = framed[:, lags * n_features :].reshape(-1, horizon, n_features)
    target_rows = np.arange(lags, n_rows - horizon + 1)
    return Samples(X=X, y=future[:, :, target_index], target_rows=target_rows)


def select(samples: Samples, mask: np.ndarray) -> Samples:
    """The samples where `mask` is true."""
    return Samples(X=samples.X[mask], y=samples.y[mask], target_rows=samples.target_rows[mask])
