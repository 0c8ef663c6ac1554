"""Prefect tasks of live accuracy: keep every champion forecast, score the kept ones as their days arrive."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from schemas.daily import DATE
from tasks import live
from tasks.config import Settings
from tasks.landing import open_history

if TYPE_CHECKING:
    from tasks.forecasters import Forecaster

EVENT_DRIFT = "travel-forecast.model.drift"


def keep_forecast(settings: Settings, forecast: pd.DataFrame, data_through: pd.Timestamp, made_by: str) -> int:
    """Keep a champion's forecast (date, forecast, intervals in travellers; model_version, kind) in the history store."""
    from tasks.history_store import save_forecasts

    version, kind = str(forecast["model_version"].iloc[0]), str(forecast["kind"].iloc[0])
    rows = live.forecast_rows(forecast, version, kind, data_through, made_by, datetime.now(UTC))
    kept = save_forecasts(open_history(settings)[0], rows)
    get_run_logger().info("kept %d forecast(s) of v%s for scoring when their days arrive", kept, version)
    return kept


@task(cache_policy=NO_CACHE)
def keep_champion_forecast(settings: Settings, history: pd.DataFrame, loaded: Iterable[Forecaster | None] = ()) -> int:
    """The champion's next `retrain.forecast_days` days from the history, kept to be scored when they arrive.
    `loaded`: versions this run already loaded, not loaded again."""
    from tasks.registry import Registry, UntrustedModel

    registry = Registry(settings.mlflow)
    champion = registry.champion()
    if champion is None or settings.retrain.forecast_days == 0:
        return 0
    try:
        forecast = registry.load(champion, loaded).predict_days(history, settings.retrain.forecast_days)
    except UntrustedModel:
        raise
    except Exception as error:  # its artifacts lost (the gate kept it, saying so): the decision stands, no forecast kept
        get_run_logger().warning("champion v%s could not forecast, nothing kept: %s", champion.version, error)
        return 0
    forecast = forecast.assign(model_version=str(champion.version), kind=champion.tags.get("kind", ""))
    return keep_forecast(settings, forecast, history[DATE].iloc[-1], "retrain")


@task(cache_policy=NO_CACHE)
def score_live_forecasts(settings: Settings) -> str | None:
    """Score every kept forecast whose day has arrived and was not scored yet: live metrics per version and day,
    logged to MLflow on the version's run (a step per day scored) and kept; the latest per version is the
    run's `live-accuracy` table. Then judge the champion on its newly scored days: why it drifts, or None."""
    from tasks.history_store import read_forecasts, read_history, read_live_scores, save_live_scores
    from tasks.registry import Registry

    store = open_history(settings)[0]
    forecasts = read_forecasts(store)
    if forecasts.empty:
        return None
    scores = live.live_metrics(forecasts, read_history(store))
    new = live.unscored(scores, read_live_scores(store))
    if new.empty:
        return None
    registry = Registry(settings.mlflow)
    columns = live.metric_columns(new)
    for version, rows in new.groupby("model_version"):
        registry.log_live_metrics(str(version), rows, columns)
    save_live_scores(store, new.assign(metrics=new[columns].to_dict("records"))[["model_version", DATE, "metrics"]])
    publish_live_table(registry, new)
    return check_drift(settings, registry, new)


def check_drift(settings: Settings, registry, new: pd.DataFrame) -> str | None:
    """Why the champion drifts on its newly scored days, or None; a drift is logged, tagged on the version and
    emitted as an event."""
    champion = registry.champion()
    mine = new[new["model_version"] == str(champion.version)] if champion else new.iloc[:0]
    if mine.empty:  # no new day of the champion's: nothing new to judge
        return None
    version, newest = str(champion.version), mine.sort_values(DATE).iloc[-1].to_dict()
    config = settings.retrain
    reason = live.drift_reason(
        newest, registry.backtest_mae(version), config.drift_factor, config.drift_coverage_margin, config.drift_min_days
    )
    if reason is not None:
        day = f"{newest[DATE]:%Y-%m-%d}"
        get_run_logger().warning("champion v%s drifts on %s: %s", version, day, reason)
        registry.client.set_model_version_tag(settings.mlflow.registered_model, version, "drift", f"{day}: {reason}")
        announce_drift(settings, version, day, reason, newest)
    return reason


def announce_drift(settings: Settings, version: str, day: str, reason: str, newest: dict) -> None:
    """The `travel-forecast.model.drift` event, for Prefect automations (a notification, a forced retrain)."""
    from prefect.events import emit_event

    from tasks.prefect_api import send_events

    model = settings.mlflow.registered_model
    figures = {name: float(value) for name, value in newest.items() if name.startswith("live_")}
    emit_event(
        event=EVENT_DRIFT,
        resource={"prefect.resource.id": f"travel-forecast.model.{model}", "prefect.resource.name": model},
        payload={"version": version, "day": day, "reason": reason} | figures,
    )
    if not send_events(timeout=30):
        get_run_logger().warning("the %s event was not sent within 30 s: automations on it did not fire", EVENT_DRIFT)


def live_report(settings: Settings, path: Path, weeks: int = 8) -> Path:
    """The one-page live report (PNG): the last `weeks` weeks' travellers and kept forecasts, each champion's live
    error against its backtest MAE, and the decisions of versions fitted in those weeks."""
    from tasks import plots
    from tasks.history_store import read_forecasts, read_history, read_live_scores
    from tasks.registry import Registry

    store = open_history(settings)[0]
    history = read_history(store)
    start = history[DATE].iloc[-1] - pd.Timedelta(weeks=weeks) + pd.Timedelta(days=1)
    forecasts = read_forecasts(store)
    shown = live.shown_forecasts(forecasts[forecasts[DATE] >= start]) if len(forecasts) else forecasts
    kept = read_live_scores(store)
    scores = kept[["model_version", DATE]].join(pd.DataFrame(kept["metrics"].tolist(), index=kept.index))
    scores = scores[scores[DATE] >= start] if len(scores) else pd.DataFrame(columns=["model_version", DATE, "live_mae_28d"])
    versions = Registry(settings.mlflow).versions()
    backtest = {version: float(tags["challenger_mae"]) for version, tags in versions.items() if "challenger_mae" in tags}
    recent = {version: tags for version, tags in versions.items() if tags.get("fitted_through", "") >= f"{start:%Y-%m-%d}"}
    decisions = [decision_line(version, recent[version]) for version in decisions_shown(recent)]
    if len(decisions) < len(recent):
        decisions.append(
            f"({len(recent) - len(decisions)} more not promoted in these weeks: the registered model's versions in MLflow)"
        )
    return plots.plot_live_report(history[history[DATE] >= start], shown, scores, backtest, decisions, path)


def decisions_shown(versions: dict[str, dict[str, str]], last: int = 5) -> list[str]:
    """The versions a page has room for, in order: every promotion or drift, and the `last` decided."""
    ordered = sorted(versions, key=int)
    return [v for v in ordered if versions[v].get("decision") == "promoted" or "drift" in versions[v] or v in ordered[-last:]]


def decision_line(version: str, tags: dict[str, str]) -> str:
    """A version's decision in one line of the report: data through, version, kind, decision, reason (and drift)."""
    reason, drift = tags.get("decision_reason", "no decision recorded"), tags.get("drift", "")
    head = f"{tags.get('fitted_through', '?'):<10}  v{version:<4} {tags.get('kind', '?'):<14} {tags.get('decision', '?'):<13} "
    line = head + (reason if len(reason) <= 92 else reason[:89] + "...")
    return line + (f"\n{'':<{len(head)}}drift {drift if len(drift) <= 86 else drift[:83] + '...'}" if drift else "")


@task(cache_policy=NO_CACHE)
def write_live_report(settings: Settings, run_dir: Path) -> Path:
    """The live report beside the run, linked from a Prefect artifact."""
    from prefect.artifacts import create_link_artifact

    path = live_report(settings, run_dir / "live-report.png")
    create_link_artifact(key="live-report", link=path.resolve().as_uri(), description="the last 8 weeks, one page")
    return path


def live_table(scores: pd.DataFrame, backtest_mae: dict[str, float]) -> list[dict]:
    """One row per version: its latest live figures beside its backtest MAE (what the gate promised)."""
    latest = scores.sort_values(DATE).drop_duplicates("model_version", keep="last")
    rows = []
    for row in latest.to_dict("records"):
        version = str(row["model_version"])
        rows.append(
            {"version": f"v{version}", "last day": f"{row[DATE]:%Y-%m-%d}", "days scored": int(row["live_days"])}
            | {name.removeprefix("live_"): round(float(row[name]), 4) for name in live.metric_columns(latest)}
            | {"backtest mae": round(backtest_mae.get(version, float("nan")), 1)}
        )
    return rows


def publish_live_table(registry, new: pd.DataFrame) -> None:
    """The `live-accuracy` table artifact of the versions scored in this run, and one log line per version."""
    from prefect.artifacts import create_table_artifact

    versions = registry.versions()
    backtest = {version: float(tags.get("challenger_mae", "nan")) for version, tags in versions.items()}
    table = live_table(new, backtest)
    logger = get_run_logger()
    for row in table:
        logger.info(
            "%s live through %s (%d days): MAE %s over 7 days, %s over 28, %s since its first forecast; backtest MAE %s",
            row["version"],
            row["last day"],
            row["days scored"],
            f"{row['mae_7d']:,.0f}",
            f"{row['mae_28d']:,.0f}",
            f"{row['mae']:,.0f}",
            f"{row['backtest mae']:,.0f}",
        )
    create_table_artifact(
        key="live-accuracy",
        table=table,
        description="Each champion's kept forecasts against the days that arrived (step 1 = the last forecast before the day)",
    )
