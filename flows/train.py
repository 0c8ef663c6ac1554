"""The training flow: validated ingest -> scale -> frame -> train -> evaluate -> register."""

from __future__ import annotations

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
    series = scale(history, settings)
    dataset = frame(series, settings.model)
    run_id = start_tracking(settings, history, run_dir)
    fitted = train_model(dataset, settings.model, run_id, run_dir)
    evaluation = evaluate_model(dataset, fitted, run_id, run_dir)
    return register_model(settings, history, dataset, fitted, evaluation, run_id)
