"""Prefect tasks of the train and backtest flows: thin wrappers that log, write files and call MLflow.

The logic lives in the plain modules beside this one; nothing here is cached, because
the steps either are cheap or have side effects (files, MLflow).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from schemas.daily import DATE, content_sha256
from tasks import evaluation as ev
from tasks import input_file
from tasks.config import GATE_REFERENCE, DataConfig, ModelConfig, Settings

if TYPE_CHECKING:  # the model side (TensorFlow, statsforecast, MLflow) loads only when a model is trained
    from tasks.backtest import Backtest
    from tasks.forecasters import Forecaster


@dataclass(frozen=True)
class Evaluation:
    """The rolling-origin backtest's scores: every forecaster on the same days, the configured one named by `kind`."""

    kind: str
    metrics: dict[str, dict[str, float]]  # forecaster -> metrics, the configured kind first
    coverages: dict[str, dict[int, float]]  # forecaster -> interval coverage per level
    all_residuals: dict[str, list[float]]  # forecaster -> log residuals on the test days (a registered model's calibration)
    runs: dict[str, str]  # forecaster -> the MLflow run holding its backtest (the training run for `kind`)
    first_day: str
    last_day: str
    days: tuple[str, ...] = ()  # each backtest day (the first target day of each forecast)
    actual: tuple[float, ...] = ()  # travellers on it
    forecasts: dict[str, tuple[float, ...]] = field(default_factory=dict)  # forecaster -> its forecast of it (step 1)

    @property
    def model(self) -> dict[str, float]:
        """The configured forecaster's metrics."""
        return self.metrics[self.kind]

    @property
    def coverage(self) -> dict[int, float]:
        return self.coverages[self.kind]

    @property
    def residuals(self) -> list[float]:
        return self.all_residuals[self.kind]

    @property
    def reference(self) -> dict[str, float]:
        """Seasonal naive's metrics: the floor of the champion gate."""
        return self.metrics[GATE_REFERENCE]

    @property
    def best_peer(self) -> str | None:
        """The compared forecaster with the lowest MAE on the same days; None when compared with none (seasonal naive alone)."""
        others = {name: m["mae"] for name, m in self.metrics.items() if name != self.kind}
        return min(others, key=lambda name: others[name] if math.isfinite(others[name]) else math.inf) if others else None

    def ratios(self) -> dict[str, float]:
        """The configured forecaster's MAE over the best peer's (if any) and over seasonal naive's (below 1: it wins)."""
        mae, best = self.model["mae"], self.best_peer
        peer = {"mae_ratio_to_best_peer": mae / self.metrics[best]["mae"]} if best else {}
        return peer | {"mae_ratio_to_seasonal_naive": mae / self.reference["mae"]}

    def comparison(self) -> str:
        """The ratios in words: "0.769x the best peer's (auto_ets), 0.536x seasonal naive's"."""
        ratios = self.ratios()
        peer = f"{ratios['mae_ratio_to_best_peer']:.3f}x the best peer's ({self.best_peer}), " if self.best_peer else ""
        return f"{peer}{ratios['mae_ratio_to_seasonal_naive']:.3f}x seasonal naive's"

    def mae_after(self, day: str) -> tuple[int, dict[str, float]]:
        """How many backtest days come after `day` (YYYY-MM-DD), and every forecaster's MAE on them."""
        after = np.array(self.days) > day
        if not after.any():
            return 0, dict.fromkeys(self.forecasts, math.nan)
        actual = np.array(self.actual)[after]
        return int(after.sum()), {name: float(np.mean(np.abs(actual - np.array(v)[after]))) for name, v in self.forecasts.items()}

    def as_kind(self, kind: str) -> Evaluation:
        """The same backtest with another of its forecasters as the configured one."""
        return replace(self, kind=kind, metrics={kind: self.metrics[kind]} | self.metrics)

    def headline(self) -> str:
        """One line of backtest figures for a model version's description."""
        model, seasonal = self.model, self.reference
        coverage = ", ".join(f"{level}% interval covers {value:.0%}" for level, value in self.coverage.items())
        return (
            f"Backtest {self.first_day} .. {self.last_day}: MAE {model['mae']:,.0f}, RMSE {model['rmse']:,.0f}, "
            f"MAPE {model['mape']:.2f}%, MASE {model['mase']:.3f} ({self.kind}; seasonal-naive MAE {seasonal['mae']:,.0f}; "
            f"MAE {self.comparison()}); {coverage}."
        )


@dataclass(frozen=True)
class TrainSummary:
    """What a training run produced."""

    run_id: str
    model_name: str
    model_version: str
    kind: str
    run_dir: Path
    epochs_run: int
    evaluation: Evaluation


@task(cache_policy=NO_CACHE)
def create_run_dir(output_dir: Path, kind: str) -> Path:
    """A fresh folder for this run's report, plots and model files."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
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
    raw = input_file.read_csv(config.path, config)
    get_run_logger().info("read %d rows x %d columns from %s", len(raw), raw.shape[1], config.path)
    return raw


@task(cache_policy=NO_CACHE)
def validate_input(raw: pd.DataFrame, config: DataConfig, run_dir: Path) -> pd.DataFrame:
    """Validate every rule at once; write the report beside the run; stop the run on any failure."""
    logger = get_run_logger()
    parsed = input_file.parse_input(raw, config)
    report = input_file.validation_report(parsed, config, config.path)
    paths = input_file.write_report(report, run_dir)
    if len(report):
        logger.error("%s failed validation (%d failures); report: %s", config.path, len(report), paths[0])
        raise input_file.InputValidationError(config.path, report, paths[0])
    history = input_file.to_history(parsed.parsed, config)
    logger.info("validated %d days, %s .. %s", len(history), history["date"].min().date(), history["date"].max().date())
    return history


@task(cache_policy=NO_CACHE)
def require_enough_history(history: pd.DataFrame, settings: Settings) -> None:
    """Stop before any MLflow run opens when the history cannot fit every forecaster ahead of the backtest days."""
    from tasks.backtest import check_history_length
    from tasks.forecasters import make_forecaster

    kinds = dict.fromkeys([settings.model.kind, *settings.backtest.compare, GATE_REFERENCE])
    longest = max((make_forecaster(kind, settings.data, settings.model) for kind in kinds), key=lambda f: f.min_fit_days)
    check_history_length(history, settings.backtest, longest.min_fit_days, longest.describe())


@task(cache_policy=NO_CACHE)
def start_tracking(
    settings: Settings, history: pd.DataFrame, run_dir: Path, kind: str, tags: dict[str, str], source: Path | None = None
) -> str:
    """Open the MLflow run of a `kind` run (train, retrain, backtest): config as params, data fingerprint, tags, reports."""
    from tasks.registry import Registry, data_fingerprint, flatten

    registry = Registry(settings.mlflow)
    for abandoned in registry.end_runs_of_dead_processes():
        get_run_logger().warning("MLflow run %s was left running by a process that is gone: ended as KILLED", abandoned)
    fingerprint = data_fingerprint(history, source)
    run_tags = {
        "preset": settings.preset,
        "forecaster": settings.model.kind,
        "data_through": fingerprint["data.last_date"],
    } | tags
    name = f"{kind}-{run_tags['data_through']}-{run_tags.get('trigger', 'manual')}"
    reports = sorted([*run_dir.glob("*.csv"), *run_dir.glob("*.json")])
    run_id = registry.start_run(name, run_tags, flatten(settings.model_dump(mode="json")) | fingerprint, reports)
    get_run_logger().info("MLflow run %s in %s", run_id, registry.uri)
    return run_id


def backtest_fits(settings: Settings, fitted: Forecaster | None = None) -> dict:
    """The configured forecaster, then every `backtest.compare` one and seasonal naive (the gate's floor), each once."""
    from functools import partial

    from tasks.backtest import already_fitted, warm_refits
    from tasks.forecasters import make_forecaster

    model = settings.model

    def fit(kind: str, train: pd.DataFrame, start: Forecaster | None = None) -> Forecaster:
        if kind != model.kind:
            return make_forecaster(kind, settings.data, model).fit(train)
        progress = FitProgress.of(model)  # the backtest's fits move too
        try:
            return make_forecaster(kind, settings.data, model, progress.record).warm_from(start).fit(train)
        finally:
            progress.clear()

    kinds = dict.fromkeys([model.kind, *settings.backtest.compare, GATE_REFERENCE])
    fits = {kind: partial(fit, kind) for kind in kinds}
    own = already_fitted(fitted) if fitted is not None else warm_refits(partial(fit, model.kind), model.warm_start_days)
    return fits | {model.kind: own}


def write_backtest_files(result: Backtest, kind: str, run_dir: Path) -> list[Path]:
    """metrics.csv, fold_metrics.csv, backtest.csv (every forecaster's forecast per day) and backtest.png."""
    from tasks import plots

    ev.metrics_table(result.metrics).to_csv(run_dir / "metrics.csv")
    result.fold_metrics.to_csv(run_dir / "fold_metrics.csv", index=False)
    days = pd.DataFrame(
        {"date": pd.DatetimeIndex(result.dates).strftime("%Y-%m-%d"), "fold": result.fold, "actual": result.actual[:, 0]}
    )
    days = days.assign(**{name: s.forecast[:, 0] for name, s in result.scores.items()})
    bounds = result.scores[kind].intervals
    days = days.assign(
        **{f"{side}_{level}": pair[i][:, 0] for level, pair in bounds.items() for i, side in enumerate(("lower", "upper"))}
    )
    days.to_csv(run_dir / "backtest.csv", index=False)
    figure = plots.plot_backtest(result, kind, run_dir / "backtest.png")
    return [run_dir / "metrics.csv", run_dir / "fold_metrics.csv", run_dir / "backtest.csv", figure]


def child_params(settings: Settings, history: pd.DataFrame) -> dict[str, str]:
    """What a compared forecaster's run shares with the training run: the data, the backtest, the intervals."""
    from tasks.registry import data_fingerprint, flatten

    shared = settings.model_dump(mode="json", include={"preset", "data", "backtest"})
    shared["model"] = {key: getattr(settings.model, key) for key in ("horizon", "interval_levels")}
    return flatten(shared) | data_fingerprint(history)


def log_compared(registry, run_id: str, name: str, scores, folds: pd.DataFrame, params: dict[str, str]) -> str:
    """A child run of the training run holding one compared forecaster's backtest; returns its id."""
    tags = {"forecaster": name, "backtest_of": run_id}
    child = registry.start_run(name, tags, params | {"model.kind": name}, [], parent=run_id)
    registry.log_backtest(child, scores, folds)
    registry.end_run(child)
    return child


@task(cache_policy=NO_CACHE)
def backtest_forecasters(
    history: pd.DataFrame, settings: Settings, run_id: str, run_dir: Path, fitted: Forecaster | None = None
) -> Evaluation:
    """Rolling-origin backtest of the configured forecaster and the ones it is compared with, on the same days.

    The configured forecaster's scores go on the run itself; every other forecaster gets a
    child run with the same metric names, so the MLflow UI compares them side by side.
    `fitted` stands in for the configured forecaster's one fit (the notebook registers the model it scores; a
    retrain may reuse a registered version fitted before the test days).
    """
    from prefect.artifacts import create_table_artifact

    from tasks.backtest import run_backtest
    from tasks.registry import Registry

    kind, registry = settings.model.kind, Registry(settings.mlflow)
    with registry.failing_run(run_id):  # a diverged fit ends the MLflow run as FAILED, saying why
        result = run_backtest(history, backtest_fits(settings, fitted), settings.backtest, settings.model.horizon)
    files = write_backtest_files(result, kind, run_dir)
    first, last = (pd.Timestamp(result.dates[i]).strftime("%Y-%m-%d") for i in (0, -1))
    scores = result.scores[kind]
    coverage = ", ".join(f"{level}%: {value:.0%}" for level, value in scores.coverage.items())
    maes = ", ".join(f"{name} {metrics['mae']:,.0f}" for name, metrics in result.metrics.items())
    get_run_logger().info(  # one line; the full table is the run's table artifact and metrics.csv
        "backtest %s .. %s, %d fold(s): MAE %s; %s interval coverage %s", first, last, result.fold.max() + 1, maes, kind, coverage
    )
    folds = lambda name: result.fold_metrics[result.fold_metrics["forecaster"] == name]
    registry.log_backtest(run_id, scores, folds(kind))
    shared = child_params(settings, history)
    runs = {kind: run_id} | {
        name: log_compared(registry, run_id, name, other, folds(name), shared)
        for name, other in result.scores.items()
        if name != kind
    }
    evaluation = Evaluation(
        kind,
        result.metrics,
        {name: s.coverage for name, s in result.scores.items()},
        {name: s.residuals.tolist() for name, s in result.scores.items()},
        runs,
        first,
        last,
        tuple(pd.DatetimeIndex(result.dates).strftime("%Y-%m-%d")),
        tuple(result.actual[:, 0].tolist()),
        {name: tuple(s.forecast[:, 0].tolist()) for name, s in result.scores.items()},
    )
    ratios = evaluation.ratios()
    registry.log_metric_steps(run_id, [(f"backtest_{name}", value, 0) for name, value in ratios.items()])
    get_run_logger().info("%s: MAE %s", kind, evaluation.comparison())
    registry.log_files(run_id, files)
    create_table_artifact(
        key="backtest-metrics",
        table=[{"forecaster": name, **{k: round(v, 4) for k, v in metrics.items()}} for name, metrics in result.metrics.items()],
        description=f"Rolling-origin backtest {first} .. {last}: {kind} and the forecasters it is compared with, on the same days",
    )
    return evaluation


class FitProgress:
    """Per network of a fit: epochs run and the best validation loss, for one log line each (epochs at DEBUG).

    Given a terminal (`bar`), it also keeps one line there up to date while the networks train, and
    clears it when the fit ends, so an interactive user sees the fit move without a line per epoch.
    """

    def __init__(self, max_epochs: int, bar: TextIO | None = None, members: int = 1):
        self.max_epochs, self.bar, self.member_count = max_epochs, bar, members
        self.members: dict[int, dict[str, float]] = {}

    def record(self, epoch: int, logs: dict[str, float]) -> None:
        index = int(logs.get("member", 1))
        member = self.members.setdefault(index, {"epochs": 0, "best": math.inf, "best_epoch": 0})
        member["epochs"] = epoch
        loss = logs.get("val_loss", logs.get("loss", math.inf))
        if loss < member["best"]:
            member["best"], member["best_epoch"] = loss, epoch
        if self.bar is not None:
            self.bar.write("\r\x1b[K" + self.progress_line(index))
            self.bar.flush()

    def progress_line(self, index: int) -> str:
        """`network 2/5 [#####-----] epoch 100/200, best loss 0.0123`."""
        member, width = self.members[index], 20
        done = round(width * member["epochs"] / self.max_epochs)
        return (
            f"network {index}/{self.member_count} [{'#' * done}{'-' * (width - done)}] "
            f"epoch {member['epochs']:.0f}/{self.max_epochs}, best loss {member['best']:.4f}"
        )

    def clear(self) -> None:
        """Erase the progress line, before the summary is logged."""
        if self.bar is not None and self.members:
            self.bar.write("\r\x1b[K")
            self.bar.flush()

    def summary(self) -> list[str]:
        return [
            f"network {index}: {m['epochs']:.0f} of {self.max_epochs} epochs, best at epoch {m['best_epoch']:.0f} "
            f"(loss {m['best']:.4f}{'' if m['epochs'] == self.max_epochs else ', stopped early'})"
            for index, m in sorted(self.members.items())
        ]

    @classmethod
    def of(cls, model: ModelConfig) -> FitProgress:
        """The progress of one fit of `model`'s networks, with the line on a terminal if a person watches stderr."""
        return cls(model.epochs, terminal(), model.ensemble)


def terminal() -> TextIO | None:
    """Standard error when a person watches it; None in a served run, a pipe or a log file."""
    import sys

    return sys.stderr if sys.stderr.isatty() and os.environ.get("TERM", "dumb") != "dumb" else None


@task(cache_policy=NO_CACHE)
def fit_forecaster(
    history: pd.DataFrame,
    settings: Settings,
    run_id: str,
    run_dir: Path,
    before_test: bool = False,
    start: Forecaster | None = None,
) -> Forecaster:
    """Fit the configured forecaster on all history (or on the days before the backtest), logging each epoch;
    its networks start from `start`'s weights if given (a warm start, `model.warm_start_days`).

    A network's losses per epoch go to MLflow with their plot, kept even if training diverged.
    """
    from tasks import plots
    from tasks.backtest import history_before_test
    from tasks.forecasters import make_forecaster
    from tasks.registry import Registry

    logger, model = get_run_logger(), settings.model

    progress = FitProgress.of(model)

    def report(epoch: int, logs: dict[str, float]) -> None:
        progress.record(epoch, logs)
        logger.debug("epoch %d/%d %s", epoch, model.epochs, " ".join(f"{key}={value:.5f}" for key, value in logs.items()))

    rows = history_before_test(history, settings.backtest, model.horizon) if before_test else history
    forecaster = make_forecaster(model.kind, settings.data, model, report).warm_from(start)
    registry = Registry(settings.mlflow)
    logger.info("fitting %s on %d days through %s", forecaster.describe(), len(rows), rows["date"].iloc[-1].date())
    with registry.failing_run(run_id):
        try:
            try:
                forecaster.fit(rows)
            finally:
                progress.clear()
            if pretrained := forecaster.pretrained_on:  # the LSTM with data.pretrain_paths
                logger.info("its networks started from networks pretrained on %s", ", ".join(pretrained))
            for line in progress.summary():
                logger.info(line)
            registry.log_metric_steps(run_id, [(name, value, 0) for name, value in forecaster.fit_metrics().items()])
        finally:
            if forecaster.losses:
                registry.log_epoch_losses(run_id, forecaster.losses)
                registry.log_files(
                    run_id, [plots.plot_losses(forecaster.losses, "validation (early stopping)", run_dir / "loss.png")]
                )
    return forecaster


@task(cache_policy=NO_CACHE)
def finish_tracking(settings: Settings, run_id: str) -> None:
    """End the MLflow run as FINISHED: everything it was opened for is logged."""
    from tasks.registry import Registry

    Registry(settings.mlflow).end_run(run_id)


@task(cache_policy=NO_CACHE)
def register_forecaster(
    settings: Settings, history: pd.DataFrame, forecaster: Forecaster, evaluation: Evaluation, run_id: str, run_dir: Path
) -> TrainSummary:
    """Calibrate the intervals on the backtest's residuals, log the forecaster as one pyfunc, register a new version."""
    from tasks.evaluation import SEASON
    from tasks.prefect_api import require_prefect_api
    from tasks.registry import Registry

    require_prefect_api("registering a version")
    registry = Registry(settings.mlflow)
    forecaster.calibrate(evaluation.residuals)
    recent = history.tail(forecaster.min_history_days + SEASON)  # enough days for a week of forecasts
    get_run_logger().info("logging the model to MLflow run %s and registering it (%s)", run_id, forecaster.describe())
    fitted_on = history[history[DATE] <= forecaster.fitted_through]
    fit = {"fit_key": settings.fit_key(), "fitted_on_sha256": content_sha256(fitted_on)}  # a later backtest may reuse it
    with registry.failing_run(run_id):
        version = registry.register(forecaster, run_id, run_dir / "model", recent, evaluation.headline(), fit)
    registry.end_run(run_id)
    get_run_logger().info("registered %s version %s", version.name, version.version)
    return TrainSummary(run_id, version.name, str(version.version), forecaster.kind, run_dir, forecaster.epochs_run, evaluation)
