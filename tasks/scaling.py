"""MinMax scaling fitted on training rows only, and the way back to real units."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import MinMaxScaler


def fit_scaler(train_rows: np.ndarray) -> MinMaxScaler:
    """Fit a (0, 1) MinMax scaler on the training rows alone."""
    return MinMaxScaler(feature_range=(0, 1)).fit(np.asarray(train_rows, dtype=float))


def scale_rows(scaler: MinMaxScaler, rows: np.ndarray) -> np.ndarray:
    """Scale every feature column with the fitted scaler."""
    return scaler.transform(np.asarray(rows, dtype=float))


def inverse_scale_target(scaler: MinMaxScaler, scaled: np.ndarray, target_index: int = 0) -> np.ndarray:
    """Map scaled target values (any shape) back to real units."""
    low, span = scaler.data_min_[target_index], scaler.data_range_[target_index]
    return np.asarray(scaled, dtype=float) * span + low
