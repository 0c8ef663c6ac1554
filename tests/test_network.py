"""The network from config, reproducibility, ensembles and early stopping."""

import numpy as np
import pytest

from tasks.config import PRESETS, ModelConfig
from tasks.encoding import Encoded
from tasks.framing import frame_windows, select
from tasks.network import build_model, fit_network, mean_losses, member_of, predict_outputs

SEED = ModelConfig(**PRESETS["seed"]["model"])


def test_seed_preset_builds_the_notebook_network():
    import keras

    model = build_model(SEED, lags=5, n_features=3)
    shape = [(type(layer).__name__, getattr(layer, "units", getattr(layer, "rate", None))) for layer in model.layers[1:]]
    assert shape == [
        ("LSTM", 256),
        ("Dropout", 0.2),
        ("LSTM", 256),
        ("Dropout", 0.2),
        ("Dense", 16),
        ("Dropout", 0.2),
        ("Dense", 1),
    ]
    lstm_1, lstm_2 = model.layers[1], model.layers[3]
    assert lstm_1.return_sequences and not lstm_2.return_sequences
    assert lstm_1.activation is keras.activations.relu and lstm_2.activation is keras.activations.relu
    assert model.layers[5].activation is keras.activations.linear  # the recipe's Dense(16) has no activation
    assert model.input_shape == (None, 5, 3) and model.output_shape == (None, 1)
    assert model.loss == "mae" and isinstance(model.optimizer, keras.optimizers.Adam)


def test_default_network_joins_the_known_future_after_the_lstm():
    model = build_model(ModelConfig(), lags=14, n_features=7, n_future=3)
    names = [layer.name for layer in model.layers]
    assert names == ["window", "m0_lstm0", "known_future", "m0_with_future", "m0_dense0", "m0_output"]
    assert model.get_layer("m0_with_future").output.shape == (None, 32 + 3)


def _seasonal_samples(days: int = 280, lags: int = 7):
    """A clean weekly pattern (weekends low) on a slow trend, already in [0, 1]."""
    day = np.arange(days)
    travellers = 0.3 + 0.4 * (day % 7 < 5) + 0.2 * day / days
    weekend = (day % 7 >= 5).astype(float)
    past = np.column_stack([travellers, weekend])
    encoded = Encoded(past=past, future=weekend[:, None], target=travellers, reference=np.zeros(days))
    return frame_windows(encoded, lags, 1)


def test_same_seed_gives_the_same_training_run():
    samples = _seasonal_samples(60)
    config = ModelConfig(lstm_units=[8], dense_units=[4], epochs=3, batch_size=16, ensemble=2, early_stopping_patience=0)
    empty = select(samples, np.zeros(len(samples), bool))
    first = fit_network(config, samples, empty)[1]["loss"]
    second = fit_network(config, samples, empty)[1]["loss"]
    assert first == second and len(first) == 3


def test_an_ensemble_forecasts_the_mean_of_its_members():
    samples = _seasonal_samples(60)
    config = ModelConfig(lstm_units=[4], dense_units=[], epochs=2, ensemble=3, early_stopping_patience=0)
    model, _ = fit_network(config, samples, select(samples, np.zeros(len(samples), bool)))
    members = model.predict(samples.inputs, verbose=0)
    assert len(members) == 3 and not np.allclose(members[0], members[1])  # own seeds, own weights
    np.testing.assert_allclose(predict_outputs(model, samples, 1), np.mean(members, axis=0), rtol=1e-6)


def test_each_member_is_fitted_as_on_its_own_model():
    import keras

    samples = _seasonal_samples(80)
    train, validation = select(samples, samples.target_rows < 66), select(samples, samples.target_rows >= 66)
    config = ModelConfig(lstm_units=[4], dense_units=[3], epochs=6, batch_size=16, ensemble=3, early_stopping_patience=2)
    network, _ = fit_network(config, train, validation)  # the members share one compiled trainer
    for index in range(3):  # each member built, compiled and fitted alone, as before the shared trainer
        keras.utils.set_random_seed(config.random_seed * 1000 + index)
        alone = build_model(config.model_copy(update={"ensemble": 1}), 7, 2, 1, name=f"m{index}")
        stop = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
        alone.fit(
            train.inputs,
            train.y,
            epochs=6,
            batch_size=16,
            validation_data=(validation.inputs, validation.y),
            verbose=0,
            callbacks=[stop],
        )
        for fitted, own in zip(member_of(network, index, 3).get_weights(), alone.get_weights(), strict=True):
            np.testing.assert_array_equal(fitted, own)


def test_mean_losses_pads_members_that_stopped_early():
    histories = [{"loss": [4.0, 2.0, 1.0]}, {"loss": [6.0, 4.0]}]
    assert mean_losses(histories) == {"loss": [5.0, 3.0, 2.5]}


def test_loss_falls_and_the_model_beats_naive_on_a_seasonal_series():
    samples = _seasonal_samples()
    train, test = select(samples, samples.target_rows < 245), select(samples, samples.target_rows >= 245)
    config = ModelConfig(
        lags=7,
        lstm_units=[16],
        dense_units=[8],
        epochs=60,
        batch_size=32,
        learning_rate=1e-3,
        ensemble=1,
        early_stopping_patience=0,
    )
    epochs_seen = []
    model, losses = fit_network(
        config, train, select(train, np.zeros(len(train), bool)), report=lambda epoch, logs: epochs_seen.append(epoch)
    )
    assert epochs_seen == list(range(1, 61))
    assert losses["loss"][-1] < 0.5 * losses["loss"][0]
    model_mae = np.mean(np.abs(predict_outputs(model, test, 1) - test.y))
    naive_mae = np.mean(np.abs(test.X[:, -1, 0] - test.y[:, 0]))  # yesterday's value
    assert model_mae < naive_mae


def test_early_stopping_needs_validation_samples():
    samples = _seasonal_samples(60)
    validation = select(samples, samples.target_rows >= 50)
    config = ModelConfig(lstm_units=[4], dense_units=[], epochs=30, early_stopping_patience=1, ensemble=2)
    config = config.model_copy(update={"learning_rate": 0.0})  # out of a user's range (> 0): here, so nothing improves
    assert len(fit_network(config, samples, select(samples, np.zeros(len(samples), bool)))[1]["loss"]) == 30
    assert len(fit_network(config, samples, validation)[1]["loss"]) < 30  # lr 0: no improvement, stops early


def test_a_warm_start_begins_from_each_earlier_member_and_stops_on_its_own_patience(tmp_path):
    import keras

    samples = _seasonal_samples(60)
    train, validation = select(samples, samples.target_rows < 50), select(samples, samples.target_rows >= 50)
    config = ModelConfig(lstm_units=[4], dense_units=[], epochs=30, ensemble=2, early_stopping_patience=3, warm_start_patience=1)
    earlier, _ = fit_network(config.model_copy(update={"epochs": 2}), train, validation)
    earlier.save(tmp_path / "model.keras")  # as a registered version is: saved, then loaded
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    frozen = config.model_copy(update={"learning_rate": 0.0})  # out of a user's range: nothing moves, nothing improves
    warm, warm_losses = fit_network(frozen, train, validation, start=loaded)
    cold, cold_losses = fit_network(frozen, train, validation)
    assert len(warm_losses["loss"]) == 1 + 1 and len(cold_losses["loss"]) == 1 + 3  # best epoch + patience
    np.testing.assert_array_equal(predict_outputs(warm, validation, 1), predict_outputs(earlier, validation, 1))
    assert not np.allclose(predict_outputs(cold, validation, 1), predict_outputs(earlier, validation, 1))


@pytest.mark.parametrize("horizon", [1, 3])
def test_output_width_follows_the_horizon(horizon):
    model = build_model(ModelConfig(horizon=horizon, lstm_units=[4], dense_units=[]), lags=4, n_features=2)
    assert model.output_shape == (None, horizon)
