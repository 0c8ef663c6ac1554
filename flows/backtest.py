"""The backtest flow: validated ingest -> rolling-origin backtest, logged to MLflow; nothing registered."""

from prefect import flow

from tasks.config import Settings
from tasks.steps import Evaluation, backtest_model, create_run_dir, read_input, start_tracking, validate_input


@flow(name="backtest", flow_run_name="backtest-{settings.preset}", validate_parameters=False)
def backtest(settings: Settings) -> Evaluation:
    """Score the configured model against the baselines, each test day forecast from models fitted before it."""
    run_dir = create_run_dir(settings.output_dir, "backtest")
    history = validate_input(read_input(settings.data), settings.data, run_dir)
    run_id = start_tracking(settings, history, run_dir, {"trigger": "backtest"}, settings.data.path)
    return backtest_model(history, settings, run_id, run_dir)
