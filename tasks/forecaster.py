"""The logged model: Keras network + fitted encoder + spec, as one MLflow pyfunc.

Input: a DataFrame of consecutive days in the configured input format (at least
`lags` days, plus a week for the `seasonal` encoding; day types come from the calendar
when the format has none). Output: one row per forecast day after each full window,
ending with the days after the input: the forecast date, its step ahead of the window's
last day, the forecast in travellers and its prediction intervals.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd

from schemas.daily import DATE, DAY_TYPE, TARGET
from tasks.config import DataConfig, ModelConfig
from tasks.evaluation import SEASON
from tasks.features import FeatureEncoder
from tasks.framing import frame_windows, select
from tasks.ingest import history_from_frame
from tasks.intervals import interval_bounds

SPEC_FILE, ENCODER_FILE, KERAS_FILE = "spec.json", "encoder.joblib", "model.keras"


def write_model_files(
    encoder: FeatureEncoder, data: DataConfig, model_config: ModelConfig, half_widths: dict[float, float], directory: Path
) -> dict[str, str]:
    """Save spec and encoder beside the trained network (KERAS_FILE); return the three as pyfunc artifacts."""
    spec = {
        "data": data.model_dump(mode="json"),
        "model": model_config.model_dump(mode="json"),
        "interval_half_widths": {str(level): width for level, width in half_widths.items()},
    }
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    joblib.dump(encoder, directory / ENCODER_FILE)
    return {"spec": str(directory / SPEC_FILE), "encoder": str(directory / ENCODER_FILE), "keras_model": str(directory / KERAS_FILE)}


class TravelForecaster(mlflow.pyfunc.PythonModel):
    """Forecast travellers in real units, with intervals, from recent days in the input format."""

    def load_context(self, context) -> None:
        import keras

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.data = DataConfig.model_validate(spec["data"])
        self.config = ModelConfig.model_validate(spec["model"])
        self.half_widths = {float(level): width for level, width in spec["interval_half_widths"].items()}
        self.encoder = joblib.load(context.artifacts["encoder"])
        self.network = keras.models.load_model(context.artifacts["keras_model"], compile=False)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        history = history_from_frame(model_input, self.data, source="<model input>")
        return forecast_history(self.network, self.encoder, history, self.config, self.data, self.half_widths)


def with_future_days(history: pd.DataFrame, days: int, data: DataConfig) -> pd.DataFrame:
    """`history` plus `days` rows after it: day types from the calendar, travellers unknown."""
    from tasks.calendar import derive_day_types

    dates = pd.Series(pd.date_range(history[DATE].iloc[-1] + pd.Timedelta(days=1), periods=days))
    future = pd.DataFrame({DATE: dates}).assign(
        **{column: history[column].iloc[-1] for column in history.columns if column not in (DATE, TARGET, DAY_TYPE)}
    )
    future[TARGET] = np.nan
    future[DAY_TYPE] = derive_day_types(dates, data.holiday_country, data.holiday_subdivision).to_numpy()
    return pd.concat([history, future[history.columns]], ignore_index=True)


def forecast_history(
    network, encoder: FeatureEncoder, history: pd.DataFrame, config: ModelConfig, data: DataConfig, half_widths: dict[float, float]
) -> pd.DataFrame:
    """Forecasts and intervals after every full window of validated history, the last one past its end."""
    from tasks.model import predict_outputs

    extended = with_future_days(history, config.horizon, data)
    first_targets = np.arange(config.lags, len(history) + 1)
    samples = frame_windows(encoder.encode(extended), config.lags, config.horizon, first_targets)
    samples = select(samples, ~np.isnan(samples.X).any(axis=(1, 2)))  # targets may be unknown: the future
    if not len(samples):
        warm_up = SEASON if config.features == "seasonal" else 0
        raise ValueError(f"model input has {len(history)} days; the model needs at least {config.lags + warm_up}")
    forecasts = encoder.decode(predict_outputs(network, samples, config.horizon), samples.reference)
    return forecast_rows(extended[DATE].to_numpy()[samples.target_rows - 1], forecasts, half_widths)


def forecast_rows(window_ends: np.ndarray, forecasts: np.ndarray, half_widths: dict[float, float]) -> pd.DataFrame:
    """Long table (date, step, forecast, intervals) from [windows, horizon] forecasts."""
    steps = np.arange(1, forecasts.shape[1] + 1)
    dates = pd.DatetimeIndex(np.repeat(window_ends, len(steps))) + pd.to_timedelta(np.tile(steps, len(window_ends)), unit="D")
    rows = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "step": np.tile(steps, len(window_ends)), "forecast": forecasts.ravel()})
    for level, width in sorted(half_widths.items()):
        lower, upper = interval_bounds(rows["forecast"].to_numpy(), width, rows["step"].to_numpy())
        rows[f"lower_{round(level * 100)}"], rows[f"upper_{round(level * 100)}"] = lower, upper
    return rows


def forecast_ahead(predict, history: pd.DataFrame, days: int, data: DataConfig, lags_needed: int = 60) -> pd.DataFrame:
    """Forecast `days` days past the history, one day at a time, with intervals.

    Each forecast day is fed back as that day's travellers; case counts are known only up
    to the last stored day and are carried forward; day types come from the calendar.
    Intervals widen with the square root of the days ahead (errors of fed-back days add up).
    `predict` is a registered model's predict (input format in, forecast rows out).
    """
    from tasks.calendar import derive_day_types
    from tasks.ingest import to_input_format

    frame = history.tail(lags_needed).reset_index(drop=True)
    forecasts = []
    for ahead in range(1, days + 1):
        output = predict(to_input_format(frame, data))
        nxt = output[output["step"] == 1].iloc[-1]
        day = pd.Timestamp(nxt["date"])
        row = frame.iloc[[-1]].copy()
        row[DATE] = day
        row[TARGET] = max(0, int(round(float(nxt["forecast"]))))
        row[DAY_TYPE] = int(derive_day_types(pd.Series([day]), data.holiday_country, data.holiday_subdivision).iloc[0])
        frame = pd.concat([frame, row], ignore_index=True).tail(lags_needed).reset_index(drop=True)
        forecast = float(nxt["forecast"])
        bounds = {}
        for lower in (c for c in output.columns if c.startswith("lower_")):
            width = np.log(forecast / float(nxt[lower])) if float(nxt[lower]) > 0 else np.inf
            low, high = interval_bounds(forecast, width, ahead)
            bounds |= {lower: float(low), lower.replace("lower_", "upper_"): float(high)}
        forecasts.append({"date": nxt["date"], "forecast": forecast, **bounds})
    return pd.DataFrame(forecasts)
