"""The training flow: validated ingest -> backtest of every forecaster -> fit the configured one -> register."""

from pathlib import Path

import pandas as pd
from prefect import flow

from flows.runtime import dated_run_name
from tasks.config import Settings
from tasks.registry import runs_end_truthfully
from tasks.train_tasks import (
    TrainSummary,
    backtest_forecasters,
    create_run_dir,
    fit_forecaster,
    read_input,
    register_forecaster,
    require_enough_history,
    start_tracking,
    validate_input,
)


@flow(name="train", flow_run_name=dated_run_name, validate_parameters=False)
def train(settings: Settings) -> TrainSummary:
    """Train, evaluate and register one model on the configured daily CSV."""
    with runs_end_truthfully(settings.mlflow):  # a stop ends its MLflow runs as KILLED, not FINISHED
        run_dir = create_run_dir(settings.output_dir, "train")
        raw = read_input(settings.data)
        history = validate_input(raw, settings.data, run_dir)
        return train_on_history(settings, history, run_dir, "train", tags={"trigger": "manual"}, source=settings.data.path)


def train_on_history(
    settings: Settings, history: pd.DataFrame, run_dir: Path, kind: str, tags: dict[str, str], source: Path | None = None
) -> TrainSummary:
    """The steps every training shares.

    The backtest scores the configured forecaster honestly (fitted before each origin) beside
    the ones it is compared with; then the registered model is fitted on the whole history
    (or, with backtest.refit_final off, is the one fit before the test days, scored as reported).
    """
    require_enough_history(history, settings)
    run_id = start_tracking(settings, history, run_dir, kind, tags, source)
    if settings.backtest.refit_final:
        evaluation = backtest_forecasters(history, settings, run_id, run_dir)
        forecaster = fit_forecaster(history, settings, run_id, run_dir)
    else:  # the notebook's way: the model fitted before the test days is the one scored and registered
        forecaster = fit_forecaster(history, settings, run_id, run_dir, before_test=True)
        evaluation = backtest_forecasters(history, settings, run_id, run_dir, fitted=forecaster)
    return register_forecaster(settings, history, forecaster, evaluation, run_id, run_dir)


def register_peer_instead(settings: Settings, history: pd.DataFrame, challenger: TrainSummary, peer: str) -> TrainSummary:
    """Fit and register a compared forecaster on its own child run of the challenger's training run, scored by the same backtest."""
    peer_settings = settings.model_copy(update={"model": settings.model.model_copy(update={"kind": peer})})
    evaluation = challenger.evaluation.as_kind(peer)
    run_id, run_dir = evaluation.runs[peer], challenger.run_dir / peer
    forecaster = fit_forecaster(history, peer_settings, run_id, run_dir, before_test=not settings.backtest.refit_final)
    return register_forecaster(peer_settings, history, forecaster, evaluation, run_id, run_dir)
