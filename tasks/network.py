"""The Keras LSTM: built from config, trained reproducibly, progress reported each epoch.

With `ensemble` > 1 that many networks are trained independently and joined into one model
with one output per member; forecasts are their mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tasks.config import ModelConfig
from tasks.errors import RunStopped
from tasks.framing import Samples
from tasks.native_output import import_keras

if TYPE_CHECKING:  # TensorFlow takes seconds to import: only the functions that train load it.
    import keras

EpochReport = Callable[[int, dict[str, float]], None]


def _member(config: ModelConfig, past, future, prefix: str):
    """One network: stacked LSTMs with dropout, the known future joined in, dense layers."""
    keras = import_keras()

    x = past
    for i, units in enumerate(config.lstm_units):
        last = i == len(config.lstm_units) - 1
        x = keras.layers.LSTM(units, activation=config.activation, return_sequences=not last, name=f"{prefix}_lstm{i}")(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"{prefix}_dropout{i}")(x)
    if future is not None:
        x = keras.layers.Concatenate(name=f"{prefix}_with_future")([x, future])
    for i, units in enumerate(config.dense_units):
        x = keras.layers.Dense(units, activation=config.dense_activation, name=f"{prefix}_dense{i}")(x)
        if config.dense_dropout:
            x = keras.layers.Dropout(config.dropout, name=f"{prefix}_dense_dropout{i}")(x)
    return keras.layers.Dense(config.horizon, name=f"{prefix}_output")(x)


def build_model(config: ModelConfig, lags: int, n_features: int, n_future: int = 0, name: str = "m0") -> keras.Model:
    """One network on [window, (known future)] inputs, output [samples, horizon]."""
    keras = import_keras()

    past = keras.Input(shape=(lags, n_features), name="window")
    future = keras.Input(shape=(n_future,), name="known_future") if n_future else None
    output = _member(config, past, future, name)
    model = keras.Model([past, future] if future is not None else past, output, name=name)
    model.compile(loss=config.loss, optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate))
    return model


def _callbacks(report: EpochReport | None, patience: int) -> list:
    keras = import_keras()

    callbacks: list = []
    if report is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: report(epoch + 1, dict(logs or {}))))
    if patience:
        callbacks.append(keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True))
    callbacks.append(keras.callbacks.TerminateOnNaN())
    return callbacks


def _inputs(samples: Samples):
    inputs = samples.inputs
    return inputs[0] if len(inputs) == 1 else inputs


def fit_network(
    config: ModelConfig,
    train: Samples,
    validation: Samples,
    report: EpochReport | None = None,
    start: keras.Model | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Seed everything, build and fit; return the model and its per-epoch losses.

    `validation` (a chronological slice after the training days) drives early stopping;
    with no validation samples every epoch is trained. Ensemble members are fitted one
    after the other, each from its own random seed (own weights, own batch order), then joined
    into one model with one output per member. The losses are the members' mean per epoch
    (a member that stopped early repeats its last value).

    `start` (a warm start: an earlier fit of the same settings) gives each member its initial
    weights instead of its seed; such a member stops after `warm_start_patience` epochs without gain.
    """
    keras = import_keras()
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    single = config.model_copy(update={"ensemble": 1})
    has_validation = len(validation) > 0
    stops = has_validation and config.early_stopping_patience > 0
    patience = (config.warm_start_patience if start is not None else config.early_stopping_patience) if stops else 0
    shape = train.X.shape[1], train.X.shape[2], train.future.shape[1]
    # Every member trains on one compiled model: Keras traces its training and validation steps once per
    # model (seconds each), not once per member. A member is the trainer given the member's initial weights
    # and a fresh optimizer state: the same fit as its own model's, bit for bit.
    trainer = build_model(single, *shape, name="trainer") if config.ensemble > 1 else None
    members, histories = [], []
    for index in range(config.ensemble):
        keras.utils.set_random_seed(config.random_seed * 1000 + index)  # members never share a seed across runs
        member = build_model(single, *shape, name=f"m{index}")
        if start is not None:
            member.set_weights(member_of(start, index, config.ensemble).get_weights())
        model = _reset(trainer, member.get_weights()) if trainer is not None else member
        fitted = model.fit(
            _inputs(train),
            train.y,
            epochs=config.epochs,
            batch_size=config.batch_size or len(train),
            validation_data=(_inputs(validation), validation.y) if has_validation else None,
            shuffle=config.shuffle,
            verbose=0,
            callbacks=_callbacks(_member_report(report, index, config.ensemble), patience),
        )
        if trainer is not None:
            member.set_weights(trainer.get_weights())
        members.append(member)
        histories.append(fitted.history)
    return join_members(members), mean_losses(histories)


def _reset(trainer: keras.Model, weights: list[np.ndarray]) -> keras.Model:
    """The trainer as a model never trained: these weights, the optimizer's steps and moments zero."""
    trainer.set_weights(weights)
    for variable in trainer.optimizer.variables:  # none before its first fit
        if variable.name != "learning_rate":
            variable.assign(np.zeros(variable.shape, variable.dtype))
    return trainer


def _member_report(report: EpochReport | None, index: int, members: int) -> EpochReport | None:
    if report is None or members == 1:
        return report
    return lambda epoch, logs: report(epoch, {"member": index + 1, **logs})


def member_of(network: keras.Model, index: int, members: int) -> keras.Model:
    """Member `index` of a fitted (or loaded) network: a single member is the network itself."""
    return network if members == 1 else network.get_layer(f"m{index}")


def join_members(members: list) -> keras.Model:
    """One model whose outputs are the members' outputs (a single member is returned as is)."""
    keras = import_keras()

    if len(members) == 1:
        return members[0]
    inputs = [keras.Input(shape=t.shape[1:], name=t.name) for t in members[0].inputs]
    feed = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(feed, [member(feed) for member in members], name="travel_forecast_lstm")


def mean_losses(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per-epoch mean over members; a member that stopped earlier repeats its last value."""
    epochs = max(len(h["loss"]) for h in histories)
    padded = lambda values: values + [values[-1]] * (epochs - len(values))
    return {key: [float(v) for v in np.mean([padded(list(h[key])) for h in histories], axis=0)] for key in histories[0]}


class TrainingDiverged(RunStopped):
    """The loss became NaN or infinite."""

    def __init__(self, loss: float, epochs: int):
        super().__init__(f"training diverged: loss is {loss} after {epochs} epochs")


def raise_if_diverged(losses: dict[str, list[float]]) -> None:
    """Stop a run whose training loss ended non-finite."""
    if not np.isfinite(losses["loss"][-1]):
        raise TrainingDiverged(losses["loss"][-1], len(losses["loss"]))


def predict_outputs(model: keras.Model, samples: Samples, horizon: int) -> np.ndarray:
    """The members' mean output [samples, horizon], in the encoder's target units."""
    if not len(samples):
        return np.zeros((0, horizon))
    outputs = model(_inputs(samples), training=False)  # one call: no per-shape retracing as predict() has
    members = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return np.mean([np.asarray(m).reshape(len(samples), horizon) for m in members], axis=0)
