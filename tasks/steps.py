"""Prefect tasks of the training flow: thin wrappers that log, write files and call MLflow.

The logic lives in the plain modules beside this one; nothing here is cached, because
the steps either are cheap or have side effects (files, MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import dataset as ds
from tasks import evaluation as ev
from tasks import ingest
from tasks.config import DataConfig, ModelConfig, Settings
from tasks.forecaster import KERAS_FILE


@dataclass(frozen=True)
class FittedModel:
    """Where the trained network is saved, and its per-epoch losses."""

    model_dir: Path
    losses: dict[str, list[float]]
    epochs_run: int
    validation_label: str


@dataclass(frozen=True)
class Evaluation:
    """Test-window metrics per forecaster (model first) and the plot files."""

    metrics: dict[str, dict[str, float]]
    plots: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class TrainSummary:
    """What a training run produced."""

    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, dict[str, float]]
    run_dir: Path
    epochs_run: int


@task(cache_policy=NO_CACHE)
def create_run_dir(output_dir: Path, kind: str = "train") -> Path:
    """A fresh folder for this run's report, plots and model files."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = output_dir / f"{kind}-{stamp}"
    run_dir.mkdir(parents=True)
    return run_dir


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def read_input(path: Path) -> pd.DataFrame:
    """Read the daily CSV as written."""
    raw = ingest.read_csv(path)
    get_run_logger().info("read %d rows x %d columns from %s", len(raw), raw.shape[1], path)
    return raw


@task(cache_policy=NO_CACHE)
def validate_input(raw: pd.DataFrame, config: DataConfig, run_dir: Path) -> pd.DataFrame:
    """Validate every rule at once; write the report beside the run; stop the run on any failure."""
    logger = get_run_logger()
    parsed = ingest.parse_input(raw, config)
    report = ingest.validation_report(parsed, config, config.path)
    paths = ingest.write_report(report, run_dir)
    if len(report):
        logger.error("%s failed validation (%d failures); report: %s", config.path, len(report), paths[0])
        raise ingest.InputValidationError(config.path, report)
    history = ingest.to_history(parsed.parsed, config)
    logger.info("validated %d days, %s .. %s", len(history), history["date"].min().date(), history["date"].max().date())
    return history


@task(cache_policy=NO_CACHE)
def scale(history: pd.DataFrame, settings: Settings) -> ds.ScaledSeries:
    """MinMax-scale the features; the scaler sees the rows before the test window only."""
    return ds.scale_history(history, settings.data.case_columns, settings.model)


@task(cache_policy=NO_CACHE)
def frame(series: ds.ScaledSeries, config: ModelConfig) -> ds.Dataset:
    """Frame lagged samples and split them into train, validation and test by date."""
    dataset = ds.frame_dataset(series, config)
    get_run_logger().info(
        "samples: %d train, %d validation, %d test; shape %s",
        len(dataset.train.X), len(dataset.validation.X), len(dataset.test.X), dataset.train.X.shape[1:],
    )
    return dataset


@task(cache_policy=NO_CACHE)
def start_tracking(settings: Settings, history: pd.DataFrame, run_dir: Path, tags: dict[str, str], source: Path | None = None) -> str:
    """Open the MLflow run: config as params, data fingerprint, tags, the reports in run_dir."""
    import mlflow

    from tasks import tracking

    tracking.use_store(settings)
    fingerprint = tracking.data_fingerprint(history, source)
    run_tags = {"preset": settings.preset, "data_through": fingerprint["data.last_date"]} | tags
    kind = run_dir.name.split("-", 1)[0]  # train | retrain
    run_name = f"{kind}-{run_tags['data_through']}-{run_tags.get('trigger', 'manual')}"
    with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
        mlflow.log_params(tracking.flatten(settings.model_dump(mode="json")) | fingerprint)
        for report in sorted([*run_dir.glob("*.csv"), *run_dir.glob("*.json")]):
            mlflow.log_artifact(str(report))
    get_run_logger().info("MLflow run %s in %s", run.info.run_id, mlflow.get_tracking_uri())
    return run.info.run_id


@task(cache_policy=NO_CACHE)
def train_model(dataset: ds.Dataset, config: ModelConfig, run_id: str, run_dir: Path) -> FittedModel:
    """Fit the LSTM, logging each epoch to Prefect and the losses to MLflow as metric steps."""
    from tasks import tracking
    from tasks.model import fit_model

    logger = get_run_logger()
    # validation_days=0 is the notebook's setup: the test window is scored each epoch for the
    # plot only (early stopping is off then).
    monitored, label = (dataset.validation, "validation") if config.validation_days else (dataset.test, "test (not used for fitting)")

    def report(epoch: int, logs: dict[str, float]) -> None:
        shown = " ".join(f"{key}={value:.5f}" for key, value in logs.items())
        logger.info("epoch %d/%d %s", epoch, config.epochs, shown)

    model, losses = fit_model(config, dataset.train, monitored, report)
    model_dir = run_dir / "model"
    model_dir.mkdir()
    model.save(model_dir / KERAS_FILE)
    tracking.log_epoch_losses(run_id, losses)
    if not np.isfinite(losses["loss"][-1]):
        raise RuntimeError(f"training diverged: loss is {losses['loss'][-1]} after {len(losses['loss'])} epochs")
    return FittedModel(model_dir=model_dir, losses=losses, epochs_run=len(losses["loss"]), validation_label=label)


@task(cache_policy=NO_CACHE)
def evaluate_model(dataset: ds.Dataset, fitted: FittedModel, run_id: str, run_dir: Path) -> Evaluation:
    """Score the model and both naive baselines on the test days in travellers; plot; log to MLflow."""
    import keras

    from tasks import plots, tracking
    from tasks.model import predict_scaled
    from tasks.scaling import inverse_scale_target

    series, test = dataset.series, dataset.test
    model = keras.models.load_model(fitted.model_dir / KERAS_FILE, compile=False)
    model_forecast = inverse_scale_target(series.scaler, predict_scaled(model, test))
    scores = ev.score_test_window(series.actual, series.first_test_row, test.target_rows, model_forecast)
    table = ev.metrics_table(scores.metrics)
    table.to_csv(run_dir / "metrics.csv")
    get_run_logger().info("test window, %d days:\n%s", len(scores.actual), ev.format_metrics(table))
    first_days = {name: values[:, 0] for name, values in scores.forecasts.items()}
    figures = [
        plots.plot_losses(fitted.losses, fitted.validation_label, run_dir / "loss.png"),
        plots.plot_forecasts(series.dates[test.target_rows], scores.actual[:, 0], first_days, run_dir / "test_forecast.png"),
    ]
    tracking.log_evaluation(run_id, scores.metrics, [run_dir / "metrics.csv", *figures])
    return Evaluation(metrics=scores.metrics, plots=figures)


@task(cache_policy=NO_CACHE)
def register_model(
    settings: Settings, history: pd.DataFrame, dataset: ds.Dataset, fitted: FittedModel, evaluation: Evaluation, run_id: str
) -> TrainSummary:
    """Log Keras model + scaler + framing spec as one pyfunc and register it as a new version."""
    import keras

    from tasks import tracking

    model = keras.models.load_model(fitted.model_dir / KERAS_FILE, compile=False)
    registered = tracking.log_and_register(settings, history, dataset.series, model, fitted.model_dir, evaluation.metrics, run_id)
    get_run_logger().info("registered %s version %s", registered.name, registered.version)
    return TrainSummary(
        run_id=run_id,
        model_name=registered.name,
        model_version=str(registered.version),
        metrics=evaluation.metrics,
        run_dir=fitted.model_dir.parent,
        epochs_run=fitted.epochs_run,
    )
