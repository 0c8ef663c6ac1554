"""From validated history to an encoder fitted on it and framed train / validation samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.config import DataConfig, ModelConfig
from tasks.evaluation import SEASON
from tasks.features import FeatureEncoder, fit_encoder
from tasks.framing import Samples, complete, frame_windows, select


@dataclass(frozen=True)
class Dataset:
    """The fitted encoder and the samples of the history it was fitted on.

    validation: samples whose first target is in the last `validation_days` days;
    train: samples whose targets all lie before them.
    """

    encoder: FeatureEncoder
    train: Samples
    validation: Samples


def minimum_rows(config: ModelConfig) -> int:
    """Fewest days that leave at least `lags` training samples beside the validation days."""
    warm_up = SEASON if config.features == "seasonal" else 0  # the reference needs a week behind it
    return warm_up + 2 * config.lags + config.horizon + config.validation_days


def fit_encoding(history: pd.DataFrame, data: DataConfig, config: ModelConfig) -> FeatureEncoder:
    """Fit the encoder (its scaler) on these rows, after checking there are enough of them."""
    if len(history) < minimum_rows(config):
        raise ValueError(
            f"training history has {len(history)} days; features={config.features}, lags={config.lags}, "
            f"horizon={config.horizon}, validation_days={config.validation_days} need at least {minimum_rows(config)}"
        )
    return fit_encoder(config.features, history, data.case_columns, data.cumulative_columns, data.day_type_codes)


def frame_training(history: pd.DataFrame, encoder: FeatureEncoder, config: ModelConfig) -> Dataset:
    """Every complete sample of `history`, split chronologically by the date of its targets."""
    samples = frame_windows(encoder.encode(history), config.lags, config.horizon)
    samples = select(samples, complete(samples))
    first_validation_row = len(history) - config.validation_days
    last_target = samples.target_rows + config.horizon - 1
    return Dataset(
        encoder=encoder,
        train=select(samples, last_target < first_validation_row),
        validation=select(samples, samples.target_rows >= first_validation_row),
    )


def forecast_travellers(encoder: FeatureEncoder, outputs_for, history: pd.DataFrame, first_targets: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Travellers [len(first_targets), horizon] for the given first target rows of `history`.

    `outputs_for(samples)` runs the network. Each sample's window ends the day before its
    first target, so a row's own value never feeds its forecast.
    """
    samples = frame_windows(encoder.encode(history), config.lags, config.horizon, first_targets)
    return encoder.decode(outputs_for(samples), samples.reference)
