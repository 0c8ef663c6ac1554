"""The training flow: validated ingest -> scale -> frame -> train -> evaluate -> register."""

from pathlib import Path

import pandas as pd
from prefect import flow

from tasks.config import Settings
from tasks.steps import (
    TrainSummary,
    create_run_dir,
    evaluate_model,
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
    raw = read_input(settings.data.path)
    history = validate_input(raw, settings.data, run_dir)
    return train_on_history(settings, history, run_dir, tags={"trigger": "manual"}, source=settings.data.path)


def train_on_history(
    settings: Settings, history: pd.DataFrame, run_dir: Path, tags: dict[str, str], source: Path | None = None
) -> TrainSummary:
    """The steps every training shares: scale -> frame -> train -> evaluate -> register."""
    series = scale(history, settings)
    dataset = frame(series, settings.model)
    run_id = start_tracking(settings, history, run_dir, tags, source)
    fitted = train_model(dataset, settings.model, run_id, run_dir)
    evaluation = evaluate_model(dataset, fitted, run_id, run_dir)
    return register_model(settings, history, dataset, fitted, evaluation, run_id)
