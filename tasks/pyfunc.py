"""The registered MLflow model: any fitted forecaster (tasks/forecasters.py) as one pyfunc.

Input: a DataFrame of consecutive days in the configured input format. Output: one row per
forecast day after every day with enough history before it, ending with the day(s) after
the input: the date, the step ahead of the window's last day, the forecast in travellers
and its prediction intervals. With `params={"days": N}` the N days after the input instead.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from schemas.daily import DATE
from tasks.errors import HistoryTooShort
from tasks.forecasters import Forecaster, load_forecaster

ARTIFACT = "forecaster"  # the pyfunc artifact holding the forecaster's folder


def forecast_windows(forecaster: Forecaster, history: pd.DataFrame) -> pd.DataFrame:
    """Forecasts for every day from the first with enough history through the day after the history."""
    if len(history) < forecaster.min_history_days:
        raise HistoryTooShort(
            f"model input has {len(history)} day(s); {forecaster.describe()} needs at least {forecaster.min_history_days}"
        )
    first = history[DATE].iloc[0] + pd.Timedelta(days=forecaster.min_history_days)
    days = pd.date_range(first, history[DATE].iloc[-1] + pd.Timedelta(days=1))
    return forecaster.predict(history, days).assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """Forecast travellers in real units, with intervals, from recent days in the input format."""

    def load_context(self, context) -> None:
        self.forecaster = load_forecaster(Path(context.artifacts[ARTIFACT]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from tasks.errors import RunStopped

        try:
            return self.forecast(model_input, int((params or {}).get("days", 0)))
        except (RunStopped, ValueError) as error:  # the caller's input: a 400 with the reason over REST, not a 500
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from error

    def forecast(self, model_input: pd.DataFrame, days: int) -> pd.DataFrame:
        """`days` days after the input, or (0) every day the input allows."""
        from tasks.input_file import history_from_frame

        if days < 0:
            raise ValueError(f"params days must be 0 (every day the input allows) or more, got {days}")
        history = history_from_frame(model_input, self.forecaster.data, source="<model input>")
        if days:
            return self.forecaster.predict_days(history, days).assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
        return forecast_windows(self.forecaster, history)
