"""The network from config, reproducibility, and behaviour on a clean seasonal series."""

import numpy as np
import pytest

from tasks.config import PRESETS, ModelConfig
from tasks.evaluation import NaiveForecast, forecast_metrics
from tasks.framing import frame_samples, select
from tasks.model import build_model, fit_model, predict_scaled

SEED = ModelConfig(**PRESETS["seed"]["model"])


def test_seed_preset_builds_the_notebook_network():
    import keras

    model = build_model(SEED, lags=5, n_features=3)
    shape = [(type(layer).__name__, getattr(layer, "units", getattr(layer, "rate", None))) for layer in model.layers]
    assert shape == [
        ("LSTM", 256), ("Dropout", 0.2), ("LSTM", 256), ("Dropout", 0.2),
        ("Dense", 16), ("Dropout", 0.2), ("Dense", 1),
    ]
    lstm_1, lstm_2 = model.layers[0], model.layers[2]
    assert lstm_1.return_sequences and not lstm_2.return_sequences
    assert lstm_1.activation is keras.activations.relu and lstm_2.activation is keras.activations.relu
    assert model.input_shape == (None, 5, 3) and model.output_shape == (None, 1)
    assert model.loss == "mae" and isinstance(model.optimizer, keras.optimizers.Adam)


def _seasonal_samples(days: int = 280, lags: int = 7):
    """A clean weekly pattern (weekends low) on a slow trend, already in [0, 1]."""
    day = np.arange(days)
    travellers = 0.3 + 0.4 * (day % 7 < 5) + 0.2 * day / days
    weekend = (day % 7 >= 5).astype(float)
    values = np.column_stack([travellers, weekend])
    return values, frame_samples(values, lags, 1)


def test_same_seed_gives_the_same_training_run():
    _, samples = _seasonal_samples(60)
    config = ModelConfig(lstm_units=[8], dense_units=[4], epochs=3, batch_size=16, validation_days=0, early_stopping_patience=0)
    empty = select(samples, np.zeros(len(samples.X), bool))
    first = fit_model(config, samples, empty)[1]["loss"]
    second = fit_model(config, samples, empty)[1]["loss"]
    assert first == second


def test_loss_falls_and_the_model_beats_naive_on_a_seasonal_series():
    values, samples = _seasonal_samples()
    train, test = select(samples, samples.target_rows < 245), select(samples, samples.target_rows >= 245)
    config = ModelConfig(lags=7, lstm_units=[16], dense_units=[8], epochs=60, batch_size=32, early_stopping_patience=0, validation_days=0)
    epochs_seen = []
    model, losses = fit_model(config, train, test, report=lambda epoch, logs: epochs_seen.append(epoch))
    assert epochs_seen == list(range(1, 61))
    assert losses["loss"][-1] < 0.5 * losses["loss"][0]
    model_mae = forecast_metrics(test.y, predict_scaled(model, test), 1.0)["mae"]
    naive_mae = forecast_metrics(test.y, NaiveForecast(1).fit(values[:, 0]).predict(test.target_rows, 1), 1.0)["mae"]
    assert model_mae < naive_mae


def test_early_stopping_needs_a_real_validation_window():
    _, samples = _seasonal_samples(60)
    monitored = select(samples, samples.target_rows >= 50)
    config = ModelConfig(lstm_units=[4], dense_units=[], epochs=30, learning_rate=0.0, early_stopping_patience=1, validation_days=0)
    assert len(fit_model(config, samples, monitored)[1]["loss"]) == 30  # test window: never stops on it
    config = config.model_copy(update={"validation_days": 10})
    assert len(fit_model(config, samples, monitored)[1]["loss"]) < 30  # lr 0: no improvement, stops early


@pytest.mark.parametrize("horizon", [1, 3])
def test_output_width_follows_the_horizon(horizon):
    model = build_model(ModelConfig(horizon=horizon, lstm_units=[4], dense_units=[]), lags=4, n_features=2)
    assert model.output_shape == (None, horizon)
