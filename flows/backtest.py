"""The backtest flow: validated ingest -> rolling-origin backtest of every forecaster, logged to MLflow; nothing registered."""

from prefect import flow

from flows.runtime import dated_run_name
from tasks.config import Settings
from tasks.registry import runs_end_truthfully
from tasks.train_tasks import (
    Evaluation,
    backtest_forecasters,
    create_run_dir,
    finish_tracking,
    read_input,
    require_enough_history,
    start_tracking,
    validate_input,
)


@flow(name="backtest", flow_run_name=dated_run_name, validate_parameters=False)
def backtest(settings: Settings) -> Evaluation:
    """Score the configured forecaster beside the ones it is compared with, each test day forecast from fits before it."""
    with runs_end_truthfully(settings.mlflow):
        run_dir = create_run_dir(settings.output_dir, "backtest")
        history = validate_input(read_input(settings.data), settings.data, run_dir)
        require_enough_history(history, settings)
        run_id = start_tracking(settings, history, run_dir, "backtest", {"trigger": "backtest"}, settings.data.path)
        evaluation = backtest_forecasters(history, settings, run_id, run_dir)
        finish_tracking(settings, run_id)
        return evaluation
