"""Prefect tasks of the training flow: thin wrappers that log, write files and call MLflow.

The logic lives in the plain modules beside this one; nothing here is cached, because
the steps either are cheap or have side effects (files, MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import evaluation as ev
from tasks import ingest
from tasks.config import DataConfig, ModelConfig, Settings

if TYPE_CHECKING:  # the model side (scikit-learn, MLflow's pyfunc) loads only when a model is trained
    from tasks import dataset as ds
    from tasks.features import FeatureEncoder


@dataclass(frozen=True)
class FittedModel:
    """Where the trained network is saved, and its per-epoch losses."""

    model_dir: Path
    losses: dict[str, list[float]]
    epochs_run: int


@dataclass(frozen=True)
class Evaluation:
    """The rolling-origin backtest: metrics per forecaster (model first), interval coverage, files."""

    metrics: dict[str, dict[str, float]]
    coverage: dict[float, float]
    half_widths: dict[float, float]  # conformal half-widths (log scale) from the backtest residuals
    first_day: str
    last_day: str
    plots: list[Path] = field(default_factory=list)
    last_fold: tuple[FeatureEncoder, FittedModel] | None = None  # kept when the last fold's model is registered


@dataclass(frozen=True)
class TrainSummary:
    """What a training run produced."""

    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, dict[str, float]]
    run_dir: Path
    epochs_run: int
    evaluation: Evaluation | None = None


@task(cache_policy=NO_CACHE)
def create_run_dir(output_dir: Path, kind: str = "train") -> Path:
    """A fresh folder for this run's report, plots and model files."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    run_dir = output_dir / f"{kind}-{stamp}"
    run_dir.mkdir(parents=True)
    return run_dir


def _io_error(task, task_run, state) -> bool:
    # A file that is missing or unreadable as a CSV stays so: retry only other I/O errors (a network share).
    try:
        state.result()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, retry_condition_fn=_io_error)
def read_input(config: DataConfig) -> pd.DataFrame:
    """Read the daily CSV as written."""
    raw = ingest.read_csv(config.path, config)
    get_run_logger().info("read %d rows x %d columns from %s", len(raw), raw.shape[1], config.path)
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
def scale(history: pd.DataFrame, settings: Settings) -> FeatureEncoder:
    """Fit the encoder's scaler on the history the final model trains on."""
    from tasks import dataset as ds

    return ds.fit_encoding(history, settings.data, settings.model)


@task(cache_policy=NO_CACHE)
def frame(history: pd.DataFrame, encoder: FeatureEncoder, config: ModelConfig) -> ds.Dataset:
    """Frame lagged samples and split them into train and a chronological validation slice."""
    from tasks import dataset as ds

    dataset = ds.frame_training(history, encoder, config)
    get_run_logger().info(
        "samples: %d train, %d validation; window %s, known future %d",
        len(dataset.train), len(dataset.validation), dataset.train.X.shape[1:], dataset.train.future.shape[1],
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
def backtest_model(history: pd.DataFrame, settings: Settings, run_id: str, run_dir: Path, keep_last_fold: bool = False) -> Evaluation:
    """Rolling-origin backtest of the configured model against the baselines; files, MLflow, a Prefect table.

    With `keep_last_fold` the last fold's network is saved as the run's model (and its losses logged).
    """
    from prefect.artifacts import create_table_artifact

    from tasks import plots, tracking
    from tasks.backtest import lstm_fit, run_backtest
    from tasks.intervals import conformal_quantiles

    config = settings.backtest
    with tracking.failing_run(run_id):  # a diverged fit ends the MLflow run as FAILED, saying why
        result = run_backtest(history, lstm_fit(settings.data, settings.model), config, settings.model.horizon)
    table = ev.metrics_table(result.metrics)
    table.to_csv(run_dir / "metrics.csv")
    result.fold_metrics.to_csv(run_dir / "fold_metrics.csv", index=False)
    days = pd.DataFrame({"date": pd.DatetimeIndex(result.dates).strftime("%Y-%m-%d"), "fold": result.fold, "actual": result.actual[:, 0]})
    days = days.assign(**{name: values[:, 0] for name, values in result.forecasts.items()})
    days = days.assign(**{f"{side}_{round(lv * 100)}": bounds[i][:, 0] for lv, bounds in result.intervals.items() for i, side in enumerate(("lower", "upper"))})
    days.to_csv(run_dir / "backtest.csv", index=False)
    coverage = ", ".join(f"{round(lv * 100)}%: {value:.0%}" for lv, value in result.coverage.items())
    first, last = days["date"].iloc[0], days["date"].iloc[-1]
    get_run_logger().info(
        "backtest %s .. %s, %d fold(s), interval coverage %s:\n%s", first, last, result.fold.max() + 1, coverage, ev.format_metrics(table)
    )
    figure = plots.plot_backtest(result, run_dir / "backtest.png")
    tracking.log_backtest(run_id, result, [run_dir / "metrics.csv", run_dir / "fold_metrics.csv", run_dir / "backtest.csv", figure])
    create_table_artifact(
        key="backtest-metrics",
        table=[{"forecaster": name, **{k: round(v, 4) for k, v in metrics.items()}} for name, metrics in result.metrics.items()],
        description=f"Rolling-origin backtest {first} .. {last}: model and baselines on the same days",
    )
    last_fold = (result.last_fit.encoder, save_network(result.last_fit.network, result.last_fit.losses, run_id, run_dir)) if keep_last_fold else None
    return Evaluation(
        metrics=result.metrics, coverage=result.coverage, half_widths=conformal_quantiles(result.residuals, config.interval_levels),
        first_day=first, last_day=last, plots=[figure], last_fold=last_fold,
    )


def save_network(network, losses: dict[str, list[float]], run_id: str, run_dir: Path) -> FittedModel:
    """Save the network as the run's model; log its losses per epoch and their plot."""
    from tasks import plots, tracking
    from tasks.forecaster import KERAS_FILE

    model_dir = run_dir / "model"
    model_dir.mkdir()
    network.save(model_dir / KERAS_FILE)
    tracking.log_epoch_losses(run_id, losses)
    tracking.log_files(run_id, [plots.plot_losses(losses, "validation (early stopping)", run_dir / "loss.png")])
    return FittedModel(model_dir=model_dir, losses=losses, epochs_run=len(losses["loss"]))


@task(cache_policy=NO_CACHE)
def train_model(dataset: ds.Dataset, config: ModelConfig, run_id: str, run_dir: Path) -> FittedModel:
    """Fit the final LSTM on all history, logging each epoch to Prefect and the losses to MLflow."""
    from tasks import tracking
    from tasks.model import fit_model, raise_if_diverged

    logger = get_run_logger()

    def report(epoch: int, logs: dict[str, float]) -> None:
        shown = " ".join(f"{key}={value:.5f}" for key, value in logs.items())
        logger.info("epoch %d/%d %s", epoch, config.epochs, shown)

    model, losses = fit_model(config, dataset.train, dataset.validation, report)
    fitted = save_network(model, losses, run_id, run_dir)  # kept for inspection even if it diverged
    with tracking.failing_run(run_id):
        raise_if_diverged(losses)
    return fitted


@task(cache_policy=NO_CACHE)
def register_model(
    settings: Settings, history: pd.DataFrame, encoder: FeatureEncoder, fitted: FittedModel, evaluation: Evaluation, run_id: str
) -> TrainSummary:
    """Log network + encoder + spec (with the backtest's interval widths) as one pyfunc; register a new version."""
    import keras

    from tasks import tracking
    from tasks.forecaster import KERAS_FILE

    model = keras.models.load_model(fitted.model_dir / KERAS_FILE, compile=False)
    get_run_logger().info("logging the model to MLflow run %s and registering it", run_id)
    registered = tracking.log_and_register(settings, history, encoder, model, fitted.model_dir, evaluation, run_id)
    get_run_logger().info("registered %s version %s", registered.name, registered.version)
    return TrainSummary(
        run_id=run_id,
        model_name=registered.name,
        model_version=str(registered.version),
        metrics=evaluation.metrics,
        run_dir=fitted.model_dir.parent,
        epochs_run=fitted.epochs_run,
        evaluation=evaluation,
    )
