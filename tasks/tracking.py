"""MLflow at the edge: the store inside mlruns/, run logging, model logging and registration."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from schemas.daily import DATE
from tasks.config import MlflowConfig, Settings
from tasks.errors import RunStopped
from tasks.evaluation import SEASON

# What a logged model needs to load and predict; versions pinned to this environment.
MODEL_REQUIREMENTS = ["mlflow", "tensorflow-cpu", "keras", "scikit-learn", "pandas", "pandera", "holidays", "pydantic", "joblib"]


def tracking_uri(config: MlflowConfig) -> str:
    """The configured tracking server, else the SQLite database inside the store folder (absolute)."""
    return config.tracking_uri or f"sqlite:///{config.store_dir.resolve() / 'mlflow.db'}"


class TrackingUnavailable(RunStopped):
    """The tracking server did not answer, retries included."""


def use_store(settings: Settings) -> str:
    """Point MLflow at the configured store and experiment; return the experiment id.

    Requests to a tracking server are retried with exponential backoff (mlflow.request_*).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    config = settings.mlflow
    # MLflow's HTTP client reads these on every request.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.request_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(config.request_backoff_seconds)
    store = config.store_dir.resolve()
    if not config.tracking_uri:
        store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(config))
    try:
        experiment = mlflow.get_experiment_by_name(config.experiment)
    except MlflowException as error:
        if "Max retries exceeded" not in str(error):
            raise
        raise TrackingUnavailable(
            f"MLflow tracking server {config.tracking_uri} did not answer after {config.request_retries} retries "
            f"with backoff (mlflow.request_retries): {str(error).splitlines()[0]}"
        ) from None
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    # A local store keeps artifacts beside the database (absolute, so any working directory
    # works); a tracking server decides for itself.
    location = None if settings.mlflow.tracking_uri else (store / "artifacts").as_uri()
    experiment_id = mlflow.create_experiment(settings.mlflow.experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flatten(values: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"model.lags": "14", ...}; lists as JSON."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else str(value)
    return flat


def data_fingerprint(history: pd.DataFrame, path: Path | None = None) -> dict[str, str]:
    """Rows, date range and hashes of the validated history and (if any) of the source file."""
    fingerprint = {
        "data.rows": str(len(history)),
        "data.first_date": history[DATE].min().strftime("%Y-%m-%d"),
        "data.last_date": history[DATE].max().strftime("%Y-%m-%d"),
        "data.history_sha256": hashlib.sha256(pd.util.hash_pandas_object(history, index=False).to_numpy().tobytes()).hexdigest(),
    }
    return fingerprint | ({"data.file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()} if path else {})


def model_requirements() -> list[str]:
    """Pinned requirements of the logged model (inferring them costs ~13 s)."""
    return [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS]


def code_paths() -> list[str]:
    """Our packages the pyfunc imports, shipped with the model so it loads anywhere."""
    import schemas
    import tasks

    return [str(Path(tasks.__file__).parent), str(Path(schemas.__file__).parent)]


@contextmanager
def failing_run(run_id: str) -> Iterator[None]:
    """On an error, end the MLflow run as FAILED with the reason as its `failure` tag, then re-raise."""
    try:
        yield
    except Exception as error:
        from mlflow import MlflowClient

        client = MlflowClient()
        client.set_tag(run_id, "failure", f"{type(error).__name__}: {error}"[:5000])
        client.set_terminated(run_id, status="FAILED")
        raise


def log_metric_steps(run_id: str, values: list[tuple[str, float, int]]) -> None:
    """(name, value, step) triples as metrics, in few round trips."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(name, float(value), now, step) for name, value, step in values]
    client = MlflowClient()
    for start in range(0, len(metrics), 1000):  # the batch limit of the tracking API
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def log_epoch_losses(run_id: str, losses: dict[str, list[float]]) -> None:
    """Per-epoch losses as metric steps (epoch_loss, epoch_val_loss) and the epochs run."""
    steps = [(f"epoch_{key}", value, step) for key, values in losses.items() for step, value in enumerate(values, start=1)]
    log_metric_steps(run_id, [*steps, ("epochs_run", len(losses["loss"]), 0)])


def metric_names(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """{"model": {"rmse": ..}, "naive": ..} -> {"backtest_rmse": .., "naive_backtest_rmse": ..}."""
    return {
        f"{'' if forecaster == 'model' else forecaster + '_'}backtest_{metric}": value
        for forecaster, values in metrics.items()
        for metric, value in values.items()
    }


def log_files(run_id: str, files: list[Path]) -> None:
    """Attach files to the run."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for path in files:
        client.log_artifact(run_id, str(path))


def log_backtest(run_id: str, backtest, files: list[Path]) -> None:
    """Overall metrics under stable names, per-fold metrics as steps (step = fold), coverage, files."""
    values = [(name, value, 0) for name, value in metric_names(backtest.metrics).items()]
    values += [(f"interval_coverage_{round(level * 100)}", value, 0) for level, value in backtest.coverage.items()]
    for row in backtest.fold_metrics.itertuples(index=False):
        prefix = "" if row.forecaster == "model" else f"{row.forecaster}_"
        values += [(f"{prefix}fold_{metric}", getattr(row, metric), int(row.fold)) for metric in ("mae", "rmse", "mape", "smape", "mase")]
    log_metric_steps(run_id, values)
    log_files(run_id, files)


def headline(evaluation) -> str:
    """One line of backtest figures for a model version's description."""
    model, seasonal = evaluation.metrics["model"], evaluation.metrics["seasonal_naive"]
    coverage = ", ".join(f"{round(level * 100)}% interval covers {value:.0%}" for level, value in evaluation.coverage.items())
    return (
        f"Backtest {evaluation.first_day} .. {evaluation.last_day}: MAE {model['mae']:,.0f}, RMSE {model['rmse']:,.0f}, "
        f"MAPE {model['mape']:.2f}%, MASE {model['mase']:.3f} (seasonal-naive MAE {seasonal['mae']:,.0f}); {coverage}."
    )


def log_and_register(settings: Settings, history: pd.DataFrame, encoder, model, model_dir: Path, evaluation, run_id: str):
    """Log the pyfunc (the Keras model saved in model_dir + encoder + spec) with a signature; register a new version.

    Returns the ModelVersion. Its intervals are calibrated on the backtest's residuals.
    """
    import mlflow
    from mlflow.models import infer_signature

    from tasks.forecaster import TravelForecaster, forecast_history, write_model_files
    from tasks.ingest import to_input_format

    artifacts = write_model_files(encoder, settings.data, settings.model, evaluation.half_widths, model_dir)
    recent = history.tail(settings.model.lags + SEASON + 6)  # a week for the reference, then a few windows
    input_example = to_input_format(recent, settings.data)
    output_example = forecast_history(model, encoder, recent, settings.model, settings.data, evaluation.half_widths)
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values: validation refuses those anyway.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(input_example, output_example)
    use_store(settings)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=TravelForecaster(),
            artifacts=artifacts,
            code_paths=code_paths(),
            pip_requirements=model_requirements(),
            signature=signature,
            input_example=input_example,
        )
    client = mlflow.MlflowClient()
    fitted_through = history[DATE].iloc[-1] if settings.backtest.refit_final else pd.Timestamp(evaluation.first_day) - pd.Timedelta(days=1)
    tags = {"run_id": run_id, "fitted_through": fitted_through.strftime("%Y-%m-%d")}  # the last day the network trained on
    version = mlflow.register_model(info.model_uri, settings.mlflow.registered_model, tags=tags)
    client.update_model_version(version.name, version.version, description=headline(evaluation))
    return version


CHAMPION = "champion"


def champion_version(settings: Settings):
    """The registered version holding the champion alias, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(settings.mlflow.registered_model, CHAMPION)
    except MlflowException:
        return None


class UntrustedModel(RunStopped):
    """A registered version whose files live outside this store: loading it could run foreign code."""


def load_version(settings: Settings, version):
    """Load a registered version as a pyfunc, only if its files are in this store's experiment.

    A pyfunc is unpickled on load, which runs code: a version registered from a path or
    bucket outside the experiment's artifact root is refused, not loaded.
    """
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow.experiment)
    location = client.get_model_version_download_uri(version.name, version.version)
    root = experiment.artifact_location.rstrip("/") + "/" if experiment else None
    if root is None or not location.startswith(root) or "/../" in location:
        raise UntrustedModel(
            f"model '{version.name}' v{version.version} is stored at {location}, outside experiment "
            f"'{settings.mlflow.experiment}' ({root}): refusing to load it"
        )
    return mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")


def record_decision(settings: Settings, challenger: str, champion: str | None, run_id: str, decision) -> None:
    """Tag both versions and the run with the decision; move the alias only on promotion."""
    import mlflow

    client, name = mlflow.MlflowClient(), settings.mlflow.registered_model
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, challenger, key, value)
    if champion is not None:
        client.set_model_version_tag(name, champion, "last_challenge", f"v{challenger}: {decision.tags()['decision']} - {decision.reason}")
    client.set_tag(run_id, "champion", "true" if decision.promote else "false")
    client.set_tag(run_id, "decision", decision.reason)
    if decision.promote:
        if champion is not None:  # the runs' champion tags keep telling the truth in the UI
            client.set_tag(client.get_model_version(name, champion).run_id, "champion", f"false (replaced by v{challenger})")
        client.set_registered_model_alias(name, CHAMPION, challenger)


def ui_links(settings: Settings, run_id: str, version: str) -> dict[str, str]:
    """MLflow UI addresses of a run and a model version."""
    import mlflow

    experiment_id = mlflow.MlflowClient().get_run(run_id).info.experiment_id
    ui = settings.mlflow.ui_url.rstrip("/")
    return {
        "run": f"{ui}/#/experiments/{experiment_id}/runs/{run_id}",
        "model_version": f"{ui}/#/models/{settings.mlflow.registered_model}/versions/{version}",
    }
