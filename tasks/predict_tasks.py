"""Prefect tasks of the predict flow: the champion's forecast for the coming days, written to CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.config import Settings


def amount(value: float, unit: float, named: bool = True) -> str:
    """A forecast as the input file writes it: whole travellers, or units of `unit` travellers with two decimals."""
    text = f"{value:,.0f}" if unit == 1 else f"{value:,.2f}"
    return text if not named else f"{text} travellers" if unit == 1 else f"{text} x {unit:,g} travellers"


@task(cache_policy=NO_CACHE)
def forecast_with_champion(settings: Settings, history: pd.DataFrame, days: int, today: str) -> pd.DataFrame:
    """The next `days` days from the champion (date, forecast, intervals, model version and kind) in the input file's
    unit; kept in the history store (in travellers) to be scored when the days arrive."""
    from tasks.live_tasks import keep_forecast
    from tasks.registry import CHAMPION, Registry

    registry = Registry(settings.mlflow)
    champion = registry.champion()
    if champion is None:
        raise LookupError(f"no '{CHAMPION}' alias on model '{settings.mlflow.registered_model}': run the retrain flow first")
    forecaster = registry.load(champion)
    last_day = history["date"].iloc[-1]
    age = (pd.Timestamp(today) - last_day).days
    if age > 1:  # the forecast starts the day after the history, which is then not tomorrow
        get_run_logger().warning(
            "the history ends %s, %d days ago in %s: the forecast starts %s, not tomorrow (files waiting in the landing folder?)",
            f"{last_day:%Y-%m-%d}",
            age,
            settings.retrain.timezone,
            f"{last_day + pd.Timedelta(days=1):%Y-%m-%d}",
        )
    forecast = forecaster.predict_days(history, days).drop(columns="step")
    forecast = forecast.assign(model_version=str(champion.version), kind=forecaster.kind)
    keep_forecast(settings, forecast, last_day, "predict")
    written = in_file_unit(forecast, settings.data.target_unit)
    log_forecast(written, settings.data.target_unit)
    return written


def in_file_unit(forecast: pd.DataFrame, unit: float) -> pd.DataFrame:
    """The forecast as the input file writes it: values in units of `data.target_unit` travellers, dates as text."""
    values = [c for c in forecast.columns if c == "forecast" or c.startswith(("lower_", "upper_"))]
    return forecast.assign(**{c: forecast[c] / unit for c in values}, date=forecast["date"].dt.strftime("%Y-%m-%d"))


def log_forecast(forecast: pd.DataFrame, unit: float) -> None:
    """One log line per day: the forecast and its intervals."""
    logger = get_run_logger()
    for row in forecast.to_dict("records"):
        bounds = ", ".join(
            f"{c[6:]}%: {amount(row[c], unit, False)}..{amount(row['upper_' + c[6:]], unit, False)}"
            for c in row
            if c.startswith("lower_")
        )
        logger.info(
            "%s: %s (%s; champion v%s, %s)", row["date"], amount(row["forecast"], unit), bounds, row["model_version"], row["kind"]
        )


@task(cache_policy=NO_CACHE)
def forecast_each_series(settings: Settings, names: list[str], days: int, today: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every series' champion forecast in one frame with a `series` column, and why each series that cannot
    forecast (no champion, no history) could not; none forecasting stops the run."""
    from tasks.errors import RunStopped
    from tasks.retrain_tasks import load_history

    forecasts, failed = [], {}
    for name in names:
        own = settings.for_series(name)
        try:
            forecasts.append(forecast_with_champion(own, load_history(own), days, today).assign(series=name))
        except (LookupError, RunStopped) as error:
            failed[name] = str(error)
            get_run_logger().error("%s: no forecast: %s", name, error)
    if not forecasts:
        raise RunStopped(f"no series has a forecast: {'; '.join(f'{n}: {e}' for n, e in failed.items())}")
    frame = pd.concat(forecasts, ignore_index=True)
    return frame[["series", *frame.columns.drop("series")]], failed


@task(cache_policy=NO_CACHE)
def require_every_series(failed: dict[str, str], path: Path) -> None:
    """Stop the run, after the others' forecasts were written, when some series had none: the run is not shown complete."""
    from tasks.series_tasks import SeriesFailed

    if failed:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
        raise SeriesFailed(f"{len(failed)} series without a forecast ({reasons}); the others' are in {path}")


@task(cache_policy=NO_CACHE)
def write_forecast(forecast: pd.DataFrame, output_dir: Path, run_day: str) -> Path:
    """Write the forecast CSV into the output folder."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"forecast-{run_day}.csv"
    forecast.to_csv(path, index=False)
    get_run_logger().info("forecast written to %s", path)
    return path
