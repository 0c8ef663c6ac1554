"""The training flow: validated ingest -> backtest of every forecaster -> fit the configured one -> register.

`train_each_series` does the same for every series of a long-format file, one mapped task per series.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import dated_run_name, series_task_runner, unmapped_each
from tasks.config import Settings
from tasks.registry import Registry, runs_end_truthfully
from tasks.series_tasks import (
    SeriesOutcome,
    finish_series_tracking,
    last_day,
    start_series_tracking,
    validate_series_input,
)
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

if TYPE_CHECKING:
    from tasks.forecasters import Forecaster


@flow(name="train", flow_run_name=dated_run_name, validate_parameters=False)
def train(settings: Settings) -> TrainSummary:
    """Train, evaluate and register one model on the configured daily CSV."""
    with runs_end_truthfully(settings.mlflow):  # a stop ends its MLflow runs as KILLED, not FINISHED
        run_dir = create_run_dir(settings.output_dir, "train")
        raw = read_input(settings.data)
        history = validate_input(raw, settings.data, run_dir)
        return train_on_history(settings, history, run_dir, "train", tags={"trigger": "manual"}, source=settings.data.path)


@flow(name="train-series", flow_run_name=dated_run_name, validate_parameters=False)
def train_each_series(settings: Settings) -> pd.DataFrame:
    """Train, evaluate and register one model per series of a long-format CSV; a failing series stops only itself.

    The per-series work runs one series at a time by default, on Dask workers with `scale.workers`
    or `scale.dask_address` (`--workers N`, `--dask-address`; flows/runtime.series_task_runner).
    """
    with runs_end_truthfully(settings.mlflow):
        run_dir = create_run_dir(settings.output_dir, "train")
        raw = read_input(settings.data)
        histories = validate_series_input(raw, settings.data, run_dir)
        parent = start_series_tracking(settings, list(histories), last_day(histories), run_dir, "train")
        names = list(histories)
        with series_task_runner(settings.scale) as runner:
            every = {"series": names, "history": [histories[n] for n in names]}
            runs = runner.map(train_series, every | unmapped_each(settings=settings, run_dir=run_dir, parent_run_id=parent))
            outcomes = [SeriesOutcome.of(name, run) for name, run in zip(names, runs, strict=True)]
        return finish_series_tracking(settings, outcomes, parent, run_dir)


@task(cache_policy=NO_CACHE, task_run_name="train-{series}")
def train_series(settings: Settings, series: str, history: pd.DataFrame, run_dir: Path, parent_run_id: str) -> TrainSummary:
    """One series' training, as a child MLflow run of the run over all series; its runs end FAILED if it fails."""
    own = settings.for_series(series)
    (run_dir / series).mkdir()
    tags = {"trigger": "manual", "series": series, "mlflow.parentRunId": parent_run_id}
    try:
        return train_on_history(own, history, run_dir / series, "train", tags=tags, source=settings.data.path)
    except Exception as error:
        from prefect.runtime import flow_run

        from tasks.registry import stop_reason

        registry = Registry(own.mlflow)
        left_open = [run.info.run_id for run in registry.open_runs(prefect_flow_run=flow_run.id, series=series)]
        registry.end_runs(left_open, "FAILED", stop_reason(error))
        raise


def train_on_history(
    settings: Settings,
    history: pd.DataFrame,
    run_dir: Path,
    kind: str,
    tags: dict[str, str],
    source: Path | None = None,
    backtest_fit: "Forecaster | None" = None,
    warm_start: "Forecaster | None" = None,
) -> TrainSummary:
    """The steps every training shares.

    The backtest scores the configured forecaster honestly (fitted before each origin, or `backtest_fit`:
    a registered version fitted before it) beside the ones it is compared with; then the registered model
    is fitted on the whole history (or, with backtest.refit_final off, is the one fit before the test days,
    scored as reported), its networks starting from `warm_start`'s weights if given.
    """
    require_enough_history(history, settings)
    run_id = start_tracking(settings, history, run_dir, kind, tags, source)
    if settings.backtest.refit_final:
        evaluation = backtest_forecasters(history, settings, run_id, run_dir, fitted=backtest_fit)
        forecaster = fit_forecaster(history, settings, run_id, run_dir, start=warm_start)
    else:  # the notebook's way: the model fitted before the test days is the one scored and registered
        forecaster = fit_forecaster(history, settings, run_id, run_dir, before_test=True, start=warm_start)
        evaluation = backtest_forecasters(history, settings, run_id, run_dir, fitted=forecaster)
    return register_forecaster(settings, history, forecaster, evaluation, run_id, run_dir)


def register_peer_instead(settings: Settings, history: pd.DataFrame, challenger: TrainSummary, peer: str) -> TrainSummary:
    """Fit and register a compared forecaster on its own child run of the challenger's training run, scored by the same backtest."""
    peer_settings = settings.model_copy(update={"model": settings.model.model_copy(update={"kind": peer})})
    evaluation = challenger.evaluation.as_kind(peer)
    run_id, run_dir = evaluation.runs[peer], challenger.run_dir / peer
    forecaster = fit_forecaster(history, peer_settings, run_id, run_dir, before_test=not settings.backtest.refit_final)
    return register_forecaster(peer_settings, history, forecaster, evaluation, run_id, run_dir)
