"""The Keras LSTM: built from config, trained reproducibly, progress reported each epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tasks.config import ModelConfig
from tasks.framing import Samples

if TYPE_CHECKING:  # TensorFlow takes seconds to import: only the functions that train load it.
    import keras

EpochReport = Callable[[int, dict[str, float]], None]


def build_model(config: ModelConfig, lags: int, n_features: int) -> keras.Model:
    """Stacked LSTMs with dropout, dense layers, one output per forecast day."""
    import keras

    layers: list = [keras.Input(shape=(lags, n_features))]
    for i, units in enumerate(config.lstm_units):
        last = i == len(config.lstm_units) - 1
        layers += [keras.layers.LSTM(units, activation=config.activation, return_sequences=not last)]
        layers += [keras.layers.Dropout(config.dropout)]
    for units in config.dense_units:
        layers += [keras.layers.Dense(units)]
        layers += [keras.layers.Dropout(config.dropout)] if config.dense_dropout else []
    layers += [keras.layers.Dense(config.horizon)]
    model = keras.Sequential(layers, name="travel_forecast_lstm")
    model.compile(loss=config.loss, optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate))
    return model


def _callbacks(config: ModelConfig, report: EpochReport | None, has_validation: bool) -> list:
    import keras

    callbacks: list = []
    if report is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: report(epoch + 1, dict(logs or {}))))
    # With validation_days=0 the monitored set is the test window (the notebook's plot): never stop on it.
    if config.early_stopping_patience and config.validation_days and has_validation:
        callbacks.append(
            keras.callbacks.EarlyStopping(patience=config.early_stopping_patience, restore_best_weights=True)
        )
    callbacks.append(keras.callbacks.TerminateOnNaN())
    return callbacks


def fit_model(
    config: ModelConfig, train: Samples, validation: Samples, report: EpochReport | None = None
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Seed everything, build and fit; return the model and its per-epoch losses."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(config, train.X.shape[1], train.X.shape[2])
    history = model.fit(
        train.X,
        train.y,
        epochs=config.epochs,
        batch_size=config.batch_size or len(train.X),
        validation_data=(validation.X, validation.y) if len(validation.X) else None,
        shuffle=config.shuffle,
        verbose=0,
        callbacks=_callbacks(config, report, has_validation=len(validation.X) > 0),
    )
    return model, {key: [float(v) for v in values] for key, values in history.history.items()}


def predict_scaled(model: keras.Model, samples: Samples) -> np.ndarray:
    """Scaled forecasts [samples, horizon]."""
    return model.predict(samples.X, verbose=0).reshape(len(samples.X), -1)
