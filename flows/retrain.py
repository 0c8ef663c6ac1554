"""Daily retraining: ingest the landing folder -> train a challenger -> champion decision."""

from dataclasses import dataclass

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.runtime import dated_run_name, series_task_runner, unmapped_each
from flows.train import register_peer_instead, train_on_history
from tasks.config import Settings
from tasks.live_tasks import keep_champion_forecast, score_live_forecasts, write_live_report
from tasks.registry import runs_end_truthfully
from tasks.retrain_tasks import (
    decide_champion,
    exclusive_retrain,
    final_peers_fitted_ahead,
    find_backtest_fit,
    find_warm_start,
    ingest_new_data,
    keep_registered_peer_fits,
    load_history,
    mark_trained,
    publish_summary,
    run_date,
    score_champion,
    with_run_parameters,
    write_ingest_report,
)
from tasks.series_tasks import SeriesOutcome, finish_series_tracking, series_names, start_series_tracking
from tasks.train_tasks import create_run_dir

EVENT_DATA_ARRIVED = "travel-forecast.data.arrived"


@dataclass(frozen=True)
class RetrainSummary:
    """What a retrain run did."""

    status: str  # "no new data" | "promoted" | "not promoted"
    run_date: str
    days_added: int
    days_revised: int
    model_version: str | None = None
    reason: str | None = None
    earlier_changes: int = 0  # stored by runs that did not finish, trained on now
    held_back: tuple[str, ...] = ()  # "<file>: waiting|rejected (<reason>)", so a run that added nothing says why


@flow(name="retrain", flow_run_name=dated_run_name)
def retrain(
    settings: Settings | None = None,
    force: bool = False,
    epochs: int | None = None,
    trigger: str = "manual",
    init: bool = False,
    parent_run_id: str | None = None,
) -> RetrainSummary:
    """Retrain on the full history when days arrived or were revised since the last completed retrain (or when forced).

    Every kept forecast whose day arrived is scored first, and the champion's drift judged on them; after
    the decision the champion forecasts the coming days (`retrain.forecast_days`), kept to be scored in
    turn, and the one-page live report is written beside the run.

    No settings = the defaults. One retrain runs at a time; a second waits for the first.
    `init` starts an empty history store from data.path (never done unasked). `parent_run_id`: the
    MLflow run of a retrain over many series, whose child this series' run is.
    """
    settings = with_run_parameters(settings, epochs)
    today = run_date(settings.retrain.timezone)
    with exclusive_retrain(settings), runs_end_truthfully(settings.mlflow):
        arrived = ingest_new_data(settings, init)
        drift = score_live_forecasts(settings)
        if not (arrived.untrained_changes or force):
            publish_summary(settings, today, trigger, arrived, drift=drift)
            return RetrainSummary("no new data", today, 0, 0, held_back=arrived.held_back)
        run_dir = create_run_dir(settings.output_dir, "retrain")
        write_ingest_report(arrived, run_dir)
        history = load_history(settings)
        tags = {"trigger": trigger, "run_date": today}
        if parent_run_id:
            tags |= {"series": settings.data.series, "mlflow.parentRunId": parent_run_id}
        with final_peers_fitted_ahead(settings, history):
            backtest_fit, fit_tag = find_backtest_fit(settings, history)
            warm_start, warm_tag = find_warm_start(settings, history)
            loaded = [backtest_fit, warm_start]  # registered versions this run loaded, each loaded once
            loaded += keep_registered_peer_fits(settings, history, loaded)
            tags |= fit_tag | warm_tag
            challenger = train_on_history(
                settings, history, run_dir, "retrain", tags, backtest_fit=backtest_fit, warm_start=warm_start
            )
        champion = score_champion(settings, history, challenger, loaded)
        decision = decide_champion(settings, challenger, champion, drift)
        refused = None
        if decision.peer_instead and settings.retrain.allow_peer_champion:
            refused = (challenger, decision)
            challenger = register_peer_instead(settings, history, challenger, decision.peer_instead)
            champion = score_champion(settings, history, challenger, loaded)
            decision = decide_champion(settings, challenger, champion, drift)
        mark_trained(settings, arrived, challenger)
        keep_champion_forecast(settings, history, loaded)
        write_live_report(settings, run_dir)
        publish_summary(settings, today, trigger, arrived, challenger, champion, decision, refused, drift)
    status = "promoted" if decision.promote else "not promoted"
    return RetrainSummary(
        status,
        today,
        arrived.days_added,
        arrived.days_revised,
        challenger.model_version,
        decision.reason,
        arrived.earlier_changes,
        arrived.held_back,
    )


@flow(name="retrain-series", flow_run_name=dated_run_name)
def retrain_each_series(
    settings: Settings | None = None,
    series: str = "",
    force: bool = False,
    epochs: int | None = None,
    trigger: str = "manual",
    init: bool = False,
) -> pd.DataFrame:
    """`retrain` for every series of a long-format file (or those named in `series`, comma-separated), each on its
    own history store, landing folder and registered model; a failing series stops only itself. One table for the run.

    Series one at a time by default; on Dask workers with `scale.workers` or `scale.dask_address`
    (`--workers N`, `--dask-address`; flows/runtime.series_task_runner), in a deployment's runs too.
    """
    settings = with_run_parameters(settings, epochs)
    today = run_date(settings.retrain.timezone)
    with runs_end_truthfully(settings.mlflow):
        names = [name.strip() for name in series.split(",") if name.strip()] or series_names(settings)
        run_dir = create_run_dir(settings.output_dir, "retrain")
        parent = start_series_tracking(settings, names, today, run_dir, "retrain")
        with series_task_runner(settings.scale) as runner:
            shared = unmapped_each(settings=settings, force=force, trigger=trigger, init=init, parent_run_id=parent)
            runs = runner.map(retrain_series, {"series": names} | shared)
            outcomes = [SeriesOutcome.of(name, run) for name, run in zip(names, runs, strict=True)]
        return finish_series_tracking(settings, outcomes, parent, run_dir)


@task(cache_policy=NO_CACHE, task_run_name="retrain-{series}")
def retrain_series(settings: Settings, series: str, force: bool, trigger: str, init: bool, parent_run_id: str) -> RetrainSummary:
    """One series' retrain (a flow run of its own, under this task run)."""
    return retrain(settings.for_series(series), force=force, trigger=trigger, init=init, parent_run_id=parent_run_id)
