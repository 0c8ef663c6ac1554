"""The logged model: Keras network + fitted scaler + framing spec, as one MLflow pyfunc.

Input: a DataFrame of consecutive days in the configured input format (at least `lags`
rows; day types come from the calendar when the format has no day-type column).
Output: one row per forecast day after each full window of `lags` days: the forecast
date, its step ahead of the window's last day, and the forecast in travellers.
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
from tasks.ingest import history_from_frame
from tasks.scaling import inverse_scale_target, scale_rows

SPEC_FILE, SCALER_FILE, KERAS_FILE = "spec.json", "scaler.joblib", "model.keras"


def write_model_files(scaler, data: DataConfig, model_config: ModelConfig, features: list[str], directory: Path) -> dict[str, str]:
    """Save spec and scaler beside the trained network (KERAS_FILE); return the three as pyfunc artifacts."""
    spec = {"data": data.model_dump(mode="json"), "lags": model_config.lags, "horizon": model_config.horizon, "features": features}
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    joblib.dump(scaler, directory / SCALER_FILE)
    return {"spec": str(directory / SPEC_FILE), "scaler": str(directory / SCALER_FILE), "keras_model": str(directory / KERAS_FILE)}


def forecast_windows(scaled: np.ndarray, lags: int) -> np.ndarray:
    """Every run of `lags` consecutive rows: [windows, lags, features]."""
    return np.stack([scaled[end - lags : end] for end in range(lags, len(scaled) + 1)])


class TravelForecaster(mlflow.pyfunc.PythonModel):
    """Forecast travellers in real units from recent days in the input format."""

    def load_context(self, context) -> None:
        import keras

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.data = DataConfig.model_validate(spec["data"])
        self.lags, self.horizon, self.features = spec["lags"], spec["horizon"], spec["features"]
        self.scaler = joblib.load(context.artifacts["scaler"])
        self.model = keras.models.load_model(context.artifacts["keras_model"], compile=False)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        history = history_from_frame(model_input, self.data, source="<model input>")
        return forecast_history(self.model, self.scaler, history, self.lags, self.features)


def forecast_history(model, scaler, history: pd.DataFrame, lags: int, features: list[str]) -> pd.DataFrame:
    """Forecasts in travellers after every full window of `lags` days of validated history."""
    if len(history) < lags:
        raise ValueError(f"model input has {len(history)} days; the model needs at least {lags}")
    windows = forecast_windows(scale_rows(scaler, history[features].to_numpy(float)), lags)
    forecasts = inverse_scale_target(scaler, model.predict(windows, verbose=0).reshape(len(windows), -1))
    return forecast_rows(history[DATE].iloc[lags - 1 :].to_numpy(), forecasts)


def forecast_rows(window_ends: np.ndarray, forecasts: np.ndarray) -> pd.DataFrame:
    """Long table (date, step, forecast) from [windows, horizon] forecasts."""
    steps = np.arange(1, forecasts.shape[1] + 1)
    dates = pd.DatetimeIndex(np.repeat(window_ends, len(steps))) + pd.to_timedelta(np.tile(steps, len(window_ends)), unit="D")
    return pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "step": np.tile(steps, len(window_ends)), "forecast": forecasts.ravel()})


def forecast_ahead(predict, history: pd.DataFrame, days: int, data: DataConfig, lags_needed: int = 60) -> pd.DataFrame:
    """Forecast `days` days past the history, one day at a time.

    Each forecast day is fed back as that day's travellers; case counts are known only up
    to the last stored day and are carried forward; day types come from the calendar.
    `predict` is a registered model's predict (input format in, (date, step, forecast) out).
    """
    from tasks.calendar import derive_day_types
    from tasks.ingest import to_input_format

    frame = history.tail(lags_needed).reset_index(drop=True)
    forecasts = []
    for _ in range(days):
        output = predict(to_input_format(frame, data))
        nxt = output[output["step"] == 1].iloc[-1]
        day = pd.Timestamp(nxt["date"])
        row = frame.iloc[[-1]].copy()
        row[DATE] = day
        row[TARGET] = max(0, int(round(float(nxt["forecast"]))))
        row[DAY_TYPE] = int(derive_day_types(pd.Series([day]), data.holiday_country, data.holiday_subdivision).iloc[0])
        frame = pd.concat([frame, row], ignore_index=True).tail(lags_needed).reset_index(drop=True)
        forecasts.append({"date": nxt["date"], "forecast": float(nxt["forecast"])})
    return pd.DataFrame(forecasts)
