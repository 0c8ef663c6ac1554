"""The LSTM forecaster: an encoding (tasks/encoding.py) fitted on the training rows, an ensemble of
Keras networks (tasks/network.py) trained on its framed samples (tasks/framing.py).

The one way the LSTM is fitted and the one way it forecasts: the backtest's folds, the final
model, the registered MLflow model and `predict` all call `fit` and `forecast_rows` here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.config import DataConfig, ModelConfig
from tasks.evaluation import SEASON
from tasks.forecasters import CALIBRATION_DAYS, Forecaster
from tasks.framing import Samples, complete, frame_windows, select
from tasks.intervals import log_residuals

if TYPE_CHECKING:
    from tasks.encoding import FeatureEncoder
    from tasks.network import EpochReport

ENCODER_FILE, KERAS_FILE = "encoder.joblib", "model.keras"


class LstmForecaster(Forecaster):
    """Encoder + network ensemble; forecasts in travellers.

    Without validation days (the notebook recipe) the last training days calibrate the
    intervals: their residuals are in-sample, so those intervals are optimistic.
    """

    kind = "lstm"

    def __init__(self, data: DataConfig, model: ModelConfig, report: EpochReport | None = None):
        super().__init__(data, model, report)
        self.encoder: FeatureEncoder | None = None
        self.network = None

    @property
    def min_history_days(self) -> int:
        warm_up = SEASON if self.model.encoding == "seasonal" else 0  # the reference needs a week behind it
        return warm_up + self.model.lags

    @property
    def min_fit_days(self) -> int:
        """Enough days for `lags` training samples beside the validation days."""
        return self.min_history_days + self.model.lags + self.horizon + self.model.validation_days

    @property
    def epochs_run(self) -> int:
        return len(self.losses.get("loss", []))

    def describe(self) -> str:
        m = self.model
        return f"lstm (encoding={m.encoding}, lags={m.lags}, horizon={m.horizon}, validation_days={m.validation_days})"

    def _fit(self, history: pd.DataFrame) -> np.ndarray:
        from tasks.encoding import fit_encoder
        from tasks.network import fit_network, raise_if_diverged

        data = self.data
        self.encoder = fit_encoder(self.model.encoding, history, data.case_columns, data.cumulative_columns, data.day_type_codes)
        train, validation = self.training_samples(history)
        self.network, self.losses = fit_network(self.model, train, validation, self.report)
        raise_if_diverged(self.losses)
        held_out = validation if len(validation) else select(train, np.arange(len(train)) >= len(train) - CALIBRATION_DAYS)
        actual = self.encoder.decode(held_out.y, held_out.reference)
        return log_residuals(actual, self.decode(held_out))

    def training_samples(self, history: pd.DataFrame) -> tuple[Samples, Samples]:
        """Every complete sample, split by date: validation = first target in the last `validation_days` days,
        train = all targets before them."""
        samples = frame_windows(self.encoder.encode(history), self.model.lags, self.horizon)
        samples = select(samples, complete(samples))
        first_validation_row = len(history) - self.model.validation_days
        last_target = samples.target_rows + self.horizon - 1
        return select(samples, last_target < first_validation_row), select(samples, samples.target_rows >= first_validation_row)

    def decode(self, samples: Samples) -> np.ndarray:
        """The members' mean forecast for these samples, in travellers."""
        from tasks.network import predict_outputs

        return self.encoder.decode(predict_outputs(self.network, samples, self.horizon), samples.reference)

    def forecast_rows(self, history: pd.DataFrame, first_targets: np.ndarray) -> np.ndarray:
        """Each sample's window ends the day before its first target: a row's own value never feeds its forecast."""
        return self.decode(frame_windows(self.encoder.encode(history), self.model.lags, self.horizon, first_targets))

    def _save(self, directory: Path) -> None:
        import joblib

        self.network.save(directory / KERAS_FILE)
        joblib.dump(self.encoder, directory / ENCODER_FILE)

    def _load(self, directory: Path) -> None:
        import joblib
        import keras

        self.encoder = joblib.load(directory / ENCODER_FILE)
        self.network = keras.models.load_model(directory / KERAS_FILE, compile=False)
