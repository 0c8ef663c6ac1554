"""The training flow: validated ingest -> backtest -> scale -> frame -> train -> register."""

from pathlib import Path

import pandas as pd
from prefect import flow

from tasks.config import Settings
from tasks.steps import (
    TrainSummary,
    backtest_model,
    create_run_dir,
    frame,
    read_input,
    register_model,
    scale,
    start_tracking,
    train_model,
    validate_input,
)


@flow(name="train", flow_run_name="train-{settings.preset}", validate_parameters=False)
def train(settings: Settings) -> TrainSummary:
    """Train, evaluate and register one model on the configured daily CSV."""
    run_dir = create_run_dir(settings.output_dir)
    raw = read_input(settings.data)
    history = validate_input(raw, settings.data, run_dir)
    return train_on_history(settings, history, run_dir, tags={"trigger": "manual"}, source=settings.data.path)


def train_on_history(
    settings: Settings, history: pd.DataFrame, run_dir: Path, tags: dict[str, str], source: Path | None = None
) -> TrainSummary:
    """The steps every training shares.

    The backtest scores the configuration honestly (models fitted before each origin); then
    the model that is registered is fitted on the whole history (or, with
    backtest.refit_final off, is the last fold's model, scored as reported).
    """
    run_id = start_tracking(settings, history, run_dir, tags, source)
    refit = settings.backtest.refit_final
    evaluation = backtest_model(history, settings, run_id, run_dir, keep_last_fold=not refit)
    if refit:
        encoder = scale(history, settings)
        dataset = frame(history, encoder, settings.model)
        fitted = train_model(dataset, settings.model, run_id, run_dir)
    else:  # the notebook's way: the model fitted before the test days is the one registered
        encoder, fitted = evaluation.last_fold
    return register_model(settings, history, encoder, fitted, evaluation, run_id)
