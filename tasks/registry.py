"""MLflow at the edge, as one object: runs, backtest logging, the registered model, the champion.

registry = Registry(settings.mlflow)      # the store inside mlruns/, or a tracking server
run_id = registry.start_run("train-2024-11-14-manual", tags, params, files)
registry.log_backtest(run_id, scores, fold_rows)
version = registry.register(forecaster, run_id, model_dir, recent, description, fit)  # fit: fit_key, fitted_on_sha256
registry.load(registry.champion())        # a trusted, fitted Forecaster
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from schemas.daily import DATE, content_sha256
from tasks.config import MlflowConfig
from tasks.errors import RunStopped

if TYPE_CHECKING:
    from tasks.forecasters import Forecaster

# What a logged model needs to load and predict; versions pinned to this environment.
MODEL_REQUIREMENTS = [
    "mlflow",
    "tensorflow-cpu",
    "keras",
    "scikit-learn",
    "pandas",
    "pandera",
    "holidays",
    "pydantic",
    "joblib",
    "statsforecast",
]
CHAMPION = "champion"
BATCH_LIMIT = 1000  # metrics per log_batch call (the tracking API's limit)


class TrackingUnavailable(RunStopped):
    """The tracking server did not answer, retries included."""


class UntrustedModel(RunStopped):
    """A registered version whose files live outside this store: loading it could run foreign code."""


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
        "data.history_sha256": content_sha256(history),
    }
    return fingerprint | ({"data.file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()} if path else {})


def backtest_metrics(scores) -> list[tuple[str, float, int]]:
    """One forecaster's backtest under the names every forecaster's run shares: backtest_mae, interval_coverage_80, ..."""
    values = [(f"backtest_{metric}", value, 0) for metric, value in scores.metrics.items()]
    return values + [(f"interval_coverage_{level}", value, 0) for level, value in scores.coverage.items()]


def fold_metric_steps(fold_rows: pd.DataFrame) -> list[tuple[str, float, int]]:
    """Per-fold metrics of one forecaster as steps (step = fold)."""
    return [
        (f"fold_{m}", getattr(row, m), int(row.fold))
        for row in fold_rows.itertuples(index=False)
        for m in ("mae", "rmse", "mape", "smape", "mase")
    ]


def owner_tags() -> dict[str, str]:
    """Which process and Prefect flow run own a run: how a stop or a later run finds what was left open."""
    from prefect.runtime import flow_run

    return {"host": socket.gethostname(), "pid": str(os.getpid())} | ({"prefect_flow_run": flow_run.id} if flow_run.id else {})


def process_alive(pid: int) -> bool:
    """Whether a process of this machine exists (a reused pid counts as alive: its run is then left for a person)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def stop_reason(error: BaseException) -> str:
    """How a run ended early, for its `failure` tag."""
    from prefect.exceptions import TerminationSignal

    if isinstance(error, TerminationSignal):
        return f"stopped by signal {error.signal} (SIGTERM: a stop or a cancellation)"
    if isinstance(error, KeyboardInterrupt):
        return "stopped by Ctrl-C (SIGINT)" if type(error) is KeyboardInterrupt else f"stopped: {error}"
    return f"{type(error).__name__}: {error}"


@contextmanager
def runs_end_truthfully(config: MlflowConfig) -> Iterator[None]:
    """End the MLflow runs this flow run left open when it stops early: KILLED on a signal or Ctrl-C, FAILED on an error.

    Without it an aborted run stays RUNNING for good, or is shown FINISHED by MLflow's exit hook.
    """
    from prefect.runtime import flow_run

    try:
        yield
    except BaseException as error:
        no_store_yet = not config.tracking_uri and not (config.store_dir / "mlflow.db").exists()  # nothing to end: create none
        if flow_run.id and not no_store_yet:
            with further_sigterm_ignored():
                try:
                    registry = Registry(config)
                    status = "FAILED" if isinstance(error, Exception) else "KILLED"
                    open_runs = [run.info.run_id for run in registry.open_runs(prefect_flow_run=flow_run.id)]
                    registry.end_runs(open_runs, status, stop_reason(error))
                except Exception as unreachable:  # the store is gone: the next run ends them (end_runs_of_dead_processes)
                    logging.getLogger(__name__).warning("could not end the open MLflow runs: %s", unreachable)
        raise


@contextmanager
def mlflow_chatter_hidden() -> Iterator[None]:
    """MLflow's own progress lines (printed to stderr, or logged at INFO) kept out of ours meanwhile."""
    import contextlib
    import io

    chatty = logging.getLogger("mlflow")
    level = chatty.level
    chatty.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        chatty.setLevel(level)


@contextmanager
def further_sigterm_ignored() -> Iterator[None]:
    """While a stopping run records how it ended: a second SIGTERM must not cut that short.

    A service stop sends SIGTERM to every process of the service, and Prefect's runner then
    sends its served run another one to cancel it; the run is stopping anyway.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Registry:
    """The configured MLflow store: experiment, runs, registered model and its champion alias."""

    def __init__(self, config: MlflowConfig):
        from mlflow import MlflowClient

        self.config = config
        self.uri = config.tracking_uri or f"sqlite:///{config.store_dir.resolve() / 'mlflow.db'}"
        # MLflow's HTTP client reads these on every request: retries with doubling waits.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.request_retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(config.request_backoff_seconds)
        if not config.tracking_uri:
            config.store_dir.resolve().mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment_id = self._experiment()

    def _experiment(self) -> str:
        """The experiment's id, created on first use (a local store keeps artifacts beside its database)."""
        from mlflow.exceptions import MlflowException

        try:
            experiment = self.client.get_experiment_by_name(self.config.experiment)
        except MlflowException as error:
            if "Max retries exceeded" not in str(error):
                raise
            raise TrackingUnavailable(
                f"MLflow tracking server {self.config.tracking_uri} did not answer after {self.config.request_retries} retries "
                f"with backoff (mlflow.request_retries): {str(error).splitlines()[0]}"
            ) from None
        if experiment is not None:
            return experiment.experiment_id
        location = None if self.config.tracking_uri else (self.config.store_dir.resolve() / "artifacts").as_uri()
        return self.client.create_experiment(self.config.experiment, artifact_location=location)

    @contextmanager
    def _fluent(self, run_id: str) -> Iterator[None]:
        """MLflow's fluent API (model logging) pointed at this store and run.

        Only the tracking URI is set: the registry follows it, and a global registry URI would
        redirect every MlflowClient created later in this process.
        """
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=run_id):
            yield

    # Runs ---------------------------------------------------------------------------------

    def start_run(
        self, name: str, tags: dict[str, str], params: dict[str, str], files: list[Path], parent: str | None = None
    ) -> str:
        """A new run (a child of `parent` if given) with params, tags and files; left open for what follows.

        The context tags MLflow's fluent start_run adds (user, source, git commit) are added too.
        """
        from mlflow.entities import Param
        from mlflow.tracking.context.registry import resolve_tags

        tags = resolve_tags(tags | owner_tags() | ({"mlflow.parentRunId": parent} if parent else {}))
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        items = [Param(key, value[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):  # the tracking API takes 100 params per batch
            self.client.log_batch(run.info.run_id, params=items[start : start + 100])
        self.log_files(run.info.run_id, files)
        return run.info.run_id

    def end_run(self, run_id: str) -> None:
        self.client.set_terminated(run_id, status="FINISHED")

    def open_runs(self, **tags: str) -> list:
        """The experiment's RUNNING runs carrying every one of these tags (with all their tags)."""
        conditions = ["attributes.status = 'RUNNING'", *(f"tags.{key} = '{value}'" for key, value in tags.items())]
        return self.client.search_runs([self.experiment_id], " and ".join(conditions), max_results=1000)

    def end_runs(self, run_ids: list[str], status: str, reason: str) -> None:
        """End runs as FAILED or KILLED, the reason as their `failure` tag."""
        for run_id in run_ids:
            self.client.set_tag(run_id, "failure", reason[:5000])
            self.client.set_terminated(run_id, status=status)

    def end_runs_of_dead_processes(self) -> list[str]:
        """End as KILLED the runs left RUNNING by processes of this machine that no longer exist (SIGKILL, power loss)."""
        dead = [
            run.info.run_id
            for run in self.open_runs(host=socket.gethostname())
            if not process_alive(int(run.data.tags.get("pid", "0")))  # the search returned the tags: no get_run per run
        ]
        self.end_runs(dead, "KILLED", "its process ended without closing the run (killed, or the machine stopped)")
        return dead

    @contextmanager
    def failing_run(self, run_id: str) -> Iterator[None]:
        """On an error, end the run as FAILED with the reason as its `failure` tag, then re-raise."""
        try:
            yield
        except Exception as error:
            self.client.set_tag(run_id, "failure", f"{type(error).__name__}: {error}"[:5000])
            self.client.set_terminated(run_id, status="FAILED")
            raise

    def log_metric_steps(self, run_id: str, values: list[tuple[str, float, int]]) -> None:
        """(name, value, step) triples as metrics, in few round trips."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for name, value, step in values]
        for start in range(0, len(metrics), BATCH_LIMIT):
            self.client.log_batch(run_id, metrics=metrics[start : start + BATCH_LIMIT])

    def log_epoch_losses(self, run_id: str, losses: dict[str, list[float]]) -> None:
        """Per-epoch losses as metric steps (epoch_loss, epoch_val_loss) and the epochs run."""
        steps = [(f"epoch_{key}", value, step) for key, values in losses.items() for step, value in enumerate(values, start=1)]
        self.log_metric_steps(run_id, [*steps, ("epochs_run", len(losses["loss"]), 0)])

    def log_files(self, run_id: str, files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(run_id, str(path))

    def log_backtest(self, run_id: str, scores, fold_rows: pd.DataFrame) -> None:
        """A forecaster's overall backtest metrics and its per-fold metrics as steps."""
        self.log_metric_steps(run_id, backtest_metrics(scores) + fold_metric_steps(fold_rows))

    # The registered model -----------------------------------------------------------------

    def register(self, forecaster, run_id: str, model_dir: Path, recent: pd.DataFrame, description: str, fit: dict[str, str]):
        """Log the fitted forecaster (saved into model_dir) as the run's pyfunc; register a new version.

        `recent` (validated history) becomes the input example, its forecasts the output example.
        The version is tagged with its kind, the last day its fit saw (`fitted_through`) and `fit`: its
        settings' `fit_key` and the hash of the days it was fitted on (`fitted_on_sha256`), with which a
        later retrain's backtest may forecast (`registered_fits`).
        """
        import mlflow.pyfunc
        from mlflow.models import infer_signature

        from tasks.input_file import to_input_format
        from tasks.pyfunc import ARTIFACT, forecast_windows

        forecaster.save(model_dir)
        input_example = to_input_format(recent, forecaster.data)
        output_example = forecast_windows(forecaster, recent)
        with warnings.catch_warnings():
            # MLflow hints that integer columns cannot hold missing values: validation refuses those anyway.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            signature = infer_signature(input_example, output_example, params={"days": 0})
        with self._fluent(run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=MODEL_CODE,  # code, not a pickle: MLflow warns a pickled object runs code on load
                artifacts={ARTIFACT: str(model_dir)},
                code_paths=code_paths(),
                pip_requirements=model_requirements(),
                signature=signature,
                input_example=input_example,
            )
        tags = {
            "run_id": run_id,
            "kind": forecaster.kind,
            "fitted_through": forecaster.fitted_through.strftime("%Y-%m-%d"),
        } | fit
        # Registered through the tracking URI that _fluent set (the registry follows it).
        with mlflow_chatter_hidden():  # "Registered model ... already exists. Creating a new version": ours says it once
            version = mlflow.register_model(info.model_uri, self.config.registered_model, tags=tags)
        self.client.update_model_version(version.name, version.version, description=description)
        return version

    def champion(self):
        """The registered version holding the champion alias, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.config.registered_model, CHAMPION)
        except MlflowException:
            return None

    def load(self, version, loaded: Iterable[Forecaster | None] = ()):
        """A registered version's fitted forecaster, only if its files are in this store's experiment; one this
        run already loaded (in `loaded`) is returned as it is, not loaded again (a version never changes).

        Loading a pyfunc runs its code (and older versions were pickled): a version registered
        from a path or bucket outside the experiment's artifact root is refused, not loaded.
        """
        import mlflow.artifacts
        import mlflow.pyfunc

        key = (self.uri, version.name, str(version.version))
        if (known := next((f for f in loaded if f is not None and f.registered_as == key), None)) is not None:
            return known

        experiment = self.client.get_experiment(self.experiment_id)
        location = self.client.get_model_version_download_uri(version.name, version.version)
        root = experiment.artifact_location.rstrip("/") + "/"
        if not location.startswith(root) or "/../" in location:
            raise UntrustedModel(
                f"model '{version.name}' v{version.version} is stored at {location}, outside experiment "
                f"'{self.config.experiment}' ({root}): refusing to load it"
            )
        mlflow.set_tracking_uri(self.uri)
        # Where pyfunc.load_model would read it: a local store's own folder, a server's downloaded to a temporary one.
        files = Path(mlflow.artifacts.download_artifacts(f"models:/{version.name}/{version.version}"))
        if differences := environment_differences(files / "requirements.txt"):
            logging.getLogger(__name__).warning(
                "model '%s' v%s was logged with other packages than these (%s): it may load or forecast differently",
                version.name,
                version.version,
                "; ".join(differences),
            )
        # MLflow's own check of the same file first maps every installed package to its modules: about a second per process.
        forecaster = mlflow.pyfunc.load_model(str(files), suppress_warnings=True).unwrap_python_model().forecaster
        forecaster.registered_as = key
        return forecaster

    def record_decision(self, challenger: str, champion: str | None, run_id: str, decision, gate: dict[str, float]) -> None:
        """Tag both versions and the run with the decision; move the alias only on promotion.

        The gate's figures (`unseen_days` and the MAEs of challenger, champion and seasonal naive on
        them) go on the challenger's run beside its own `backtest_<metric>`, with `promoted` (1/0):
        the compare view shows why each decision went the way it did.
        """
        client, name = self.client, self.config.registered_model
        self.log_metric_steps(
            run_id, [*((key, value, 0) for key, value in gate.items()), ("promoted", float(decision.promote), 0)]
        )
        for key, value in decision.tags().items():
            client.set_model_version_tag(name, challenger, key, value)
        if champion is not None:
            client.set_model_version_tag(
                name, champion, "last_challenge", f"v{challenger}: {decision.tags()['decision']} - {decision.reason}"
            )
        client.set_tag(run_id, "champion", "true" if decision.promote else "false")
        client.set_tag(run_id, "decision", decision.reason)
        if decision.promote:
            if champion is not None:  # the runs' champion tags keep telling the truth in the UI
                client.set_tag(client.get_model_version(name, champion).run_id, "champion", f"false (replaced by v{challenger})")
            client.set_registered_model_alias(name, CHAMPION, challenger)

    def log_live_metrics(self, version: str, scores: pd.DataFrame, columns: list[str]) -> None:
        """A version's live metrics on its run: the step is the days scored so far, the timestamp the day itself."""
        from mlflow.entities import Metric

        run_id = self.client.get_model_version(self.config.registered_model, version).run_id
        metrics = [
            Metric(name, float(row[name]), int(row[DATE].timestamp() * 1000), int(row["live_days"]))
            for row in scores.to_dict("records")
            for name in columns
        ]
        for start in range(0, len(metrics), BATCH_LIMIT):
            self.client.log_batch(run_id, metrics=metrics[start : start + BATCH_LIMIT])

    def registered_fits(self, fit_key: str) -> list:
        """Every registered version fitted with the settings of `fit_key`, as backtest.RegisteredFit."""
        from tasks.backtest import RegisteredFit

        found = self.client.search_model_versions(f"name = '{self.config.registered_model}' AND tags.fit_key = '{fit_key}'")
        return [
            RegisteredFit(str(v.version), pd.Timestamp(v.tags["fitted_through"]), v.tags["fitted_on_sha256"])
            for v in found
            if "fitted_on_sha256" in v.tags
        ]

    def version(self, number: str):
        """One registered version of the model."""
        return self.client.get_model_version(self.config.registered_model, number)

    def versions(self) -> dict[str, dict[str, str]]:
        """Every registered version of the model and its tags."""
        found = self.client.search_model_versions(f"name = '{self.config.registered_model}'")
        return {str(version.version): dict(version.tags) for version in found}

    def backtest_mae(self, version: str) -> float:
        """The backtest MAE the version's decision was taken on (NaN if it has none)."""
        tags = self.client.get_model_version(self.config.registered_model, version).tags
        return float(tags.get("challenger_mae", "nan"))

    def ui_links(self, run_id: str, version: str) -> dict[str, str]:
        """MLflow UI addresses of a run (the classic runs view) and a model version."""
        ui = self.config.ui_url.rstrip("/")
        return {
            "run": f"{ui}/#/experiments/{self.experiment_id}/runs/{run_id}",
            "compare": f"{ui}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning",
            "model_version": f"{ui}/#/models/{self.config.registered_model}/versions/{version}",
        }


def model_requirements() -> list[str]:
    """Pinned requirements of the logged model (inferring them costs ~13 s)."""
    return [f"{name}=={package_version(name)}" for name in MODEL_REQUIREMENTS]


def environment_differences(requirements: Path) -> list[str]:
    """The pinned requirements (`name==version` lines, as model_requirements writes) that this environment does not meet."""
    from importlib.metadata import PackageNotFoundError

    differences = []
    for line in requirements.read_text().splitlines() if requirements.exists() else []:
        name, pinned = line.partition("#")[0].partition("==")[::2]
        if not pinned:
            continue
        try:
            installed = package_version(name.strip())
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned.strip():
            differences.append(f"{name.strip()} {pinned.strip()}, here {installed}")
    return differences


MODEL_CODE = str(Path(__file__).with_name("pyfunc_model.py"))  # the pyfunc's code (models from code)


def code_paths() -> list[str]:
    """Our packages the pyfunc imports, shipped with the model so it loads anywhere."""
    import schemas
    import tasks

    return [str(Path(tasks.__file__).parent), str(Path(schemas.__file__).parent)]
