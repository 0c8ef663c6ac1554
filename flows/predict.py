"""Forecast the next days with the champion from the latest stored history."""

from pathlib import Path

from prefect import flow

from flows.runtime import dated_run_name
from tasks.config import Settings
from tasks.predict_tasks import forecast_each_series, forecast_with_champion, require_every_series, write_forecast
from tasks.retrain_tasks import load_history, run_date, with_run_parameters
from tasks.series_tasks import series_names


@flow(name="predict", flow_run_name=dated_run_name)
def predict(settings: Settings | None = None, days: int = 1) -> Path:
    """Write the next `days` days' forecast (date, forecast, model version) to CSV; no settings = the defaults."""
    settings = with_run_parameters(settings, None)
    today = run_date(settings.retrain.timezone)
    if settings.many_series:  # one file with a `series` column; a series without a champion does not stop the others
        forecast, failed = forecast_each_series(settings, series_names(settings), days, today)
        path = write_forecast(forecast, settings.output_dir, today)
        require_every_series(failed, path)
        return path
    history = load_history(settings)
    forecast = forecast_with_champion(settings, history, days, today)
    return write_forecast(forecast, settings.output_dir, today)
