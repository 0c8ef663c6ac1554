"""From validated history to scaled, framed train / validation / test samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.preprocessing import MinMaxScaler

from schemas.daily import DATE, DAY_TYPE, TARGET
from tasks.config import ModelConfig
from tasks.framing import Samples, frame_samples, select
from tasks.scaling import fit_scaler, scale_rows

TARGET_INDEX = 0  # travellers is always the first feature


def feature_names(case_columns: list[str]) -> list[str]:
    """Model inputs in order: travellers, the case columns, day type."""
    return list(dict.fromkeys([TARGET, *case_columns, DAY_TYPE]))


@dataclass(frozen=True)
class ScaledSeries:
    """The history as a scaled feature matrix; the scaler saw rows before `first_test_row` only."""

    dates: np.ndarray
    actual: np.ndarray
    scaled: np.ndarray
    scaler: MinMaxScaler
    first_test_row: int
    features: list[str]


@dataclass(frozen=True)
class Dataset:
    """Framed samples split by the date of their first target day."""

    series: ScaledSeries
    train: Samples
    validation: Samples
    test: Samples


def minimum_rows(config: ModelConfig) -> int:
    """Fewest days that leave at least one training sample per lag beside validation and test."""
    return 2 * config.lags + config.horizon + config.validation_days + config.test_days


def scale_history(history: pd.DataFrame, case_columns: list[str], config: ModelConfig) -> ScaledSeries:
    """Fit the scaler on the rows before the test window and scale every row with it."""
    if len(history) < minimum_rows(config):
        raise ValueError(
            f"history has {len(history)} days; lags={config.lags}, horizon={config.horizon}, "
            f"validation_days={config.validation_days}, test_days={config.test_days} need at least {minimum_rows(config)}"
        )
    features = feature_names(case_columns)
    rows = history[features].to_numpy(dtype=float)
    first_test_row = len(history) - config.test_days
    scaler = fit_scaler(rows[:first_test_row])
    return ScaledSeries(
        dates=history[DATE].to_numpy(),
        actual=rows[:, TARGET_INDEX],
        scaled=scale_rows(scaler, rows),
        scaler=scaler,
        first_test_row=first_test_row,
        features=features,
    )


def frame_dataset(series: ScaledSeries, config: ModelConfig) -> Dataset:
    """Test: samples whose first target is in the test window; train: targets wholly before it."""
    samples = frame_samples(series.scaled, config.lags, config.horizon, TARGET_INDEX)
    first_target, last_target = samples.target_rows, samples.target_rows + config.horizon - 1
    before_test = last_target < series.first_test_row
    first_validation_row = series.first_test_row - config.validation_days
    return Dataset(
        series=series,
        train=select(samples, before_test & (last_target < first_validation_row)),
        validation=select(samples, before_test & (first_target >= first_validation_row)),
        test=select(samples, first_target >= series.first_test_row),
    )
