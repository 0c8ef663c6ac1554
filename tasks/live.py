"""Live accuracy: the champion's kept forecasts scored against the days that arrive (pure logic)."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd

from schemas.daily import DATE, TARGET

WINDOWS = (7, 28)  # days of the rolling live errors; coverage over the longer one
FORECAST_COLUMNS = ["model_version", "data_through", DATE, "kind", "forecast", "intervals", "made_by", "made_at"]


def forecast_rows(
    forecast: pd.DataFrame, version: str, kind: str, data_through: pd.Timestamp, made_by: str, made_at: datetime
) -> pd.DataFrame:
    """A forecaster's `predict_days` frame (date, forecast, lower_<level>, upper_<level>) as rows to keep."""
    levels = sorted(column.removeprefix("lower_") for column in forecast.columns if column.startswith("lower_"))
    intervals = [
        {level: [finite(row[f"lower_{level}"]), finite(row[f"upper_{level}"])] for level in levels}
        for row in forecast.to_dict("records")
    ]
    rows = {"model_version": version, "data_through": data_through, DATE: forecast[DATE].to_numpy(), "kind": kind}
    rows |= {"forecast": forecast["forecast"].astype(float).to_numpy(), "intervals": intervals, "made_by": made_by}
    return pd.DataFrame(rows | {"made_at": made_at})[FORECAST_COLUMNS]


def finite(value: float) -> float | None:
    """A bound as JSON can keep it: an unbounded side (too few residuals for the level) as None."""
    return float(value) if np.isfinite(value) else None


def latest_forecasts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per version and day, the forecast made from the most data: the one last read before the day came."""
    latest = forecasts.sort_values(["model_version", DATE, "data_through"])
    return latest.drop_duplicates(["model_version", DATE], keep="last").reset_index(drop=True)


def live_metrics(forecasts: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per version and arrived day: the live MAE and MAPE over the last 7 and 28 days and since its first scored day,
    and the share of the last 28 days inside each interval.

    Windows are calendar days ending on the day, over the days that version forecast. One row per
    version and day, with `live_days` (days scored so far, the MLflow step) and the day's own figures.
    """
    arrived = latest_forecasts(forecasts).merge(history[[DATE, TARGET]], on=DATE)
    return pd.concat(
        [version_metrics(rows) for _, rows in arrived.groupby("model_version", sort=True)] or [pd.DataFrame()],
        ignore_index=True,
    )


def version_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """`live_metrics` of one version's arrived days."""
    rows = rows.sort_values(DATE).set_index(DATE)
    actual, forecast = rows[TARGET].astype(float), rows["forecast"]
    error = (actual - forecast).abs()
    percent = (error / actual.where(actual != 0) * 100).astype(float)  # no percentage error on a day without travellers
    metrics = {"live_days": pd.Series(np.arange(1, len(rows) + 1), index=rows.index, dtype=float)}
    for name, values in (("mae", error), ("mape", percent)):
        metrics |= {f"live_{name}_{days}d": values.rolling(f"{days}D").mean() for days in WINDOWS}
        metrics[f"live_{name}"] = values.expanding().mean()
    longest = max(WINDOWS)
    for level in sorted({level for bounds in rows["intervals"] for level in bounds}):
        lower, upper = interval_bounds(rows, level)
        lower, upper = np.nan_to_num(lower, nan=-np.inf), np.nan_to_num(upper, nan=np.inf)  # unbounded covers
        inside = ((actual >= lower) & (actual <= upper)).astype(float)
        metrics[f"live_coverage_{level}_{longest}d"] = inside.rolling(f"{longest}D").mean()
    frame = pd.DataFrame(metrics).assign(actual=actual, forecast=forecast, data_through=rows["data_through"])
    return frame.reset_index().assign(model_version=rows["model_version"].iloc[0])


def unscored(scores: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """The rows of `scores` whose version and day are not among the `kept` scores."""
    if kept.empty or scores.empty:
        return scores
    seen = kept[["model_version", DATE]].assign(seen=True)
    fresh = scores.merge(seen, on=["model_version", DATE], how="left")
    return fresh[fresh["seen"].isna()].drop(columns="seen").reset_index(drop=True)


def metric_columns(scores: pd.DataFrame) -> list[str]:
    """The live metrics' names, as logged to MLflow."""
    return [column for column in scores.columns if column.startswith("live_")]


def drift_reason(newest: dict, backtest_mae: float, factor: float, coverage_margin: float, min_days: int) -> str | None:
    """Why a champion's newest live figures (a `live_metrics` row) show drift, or None.

    Drift: over at least `min_days` scored days, the live MAE of the last 28 days above `factor` times the
    backtest MAE the version was promoted on, and its widest interval's coverage of those days below
    nominal by more than `coverage_margin` (a bad run of days that the intervals still cover is noise).
    """
    longest = max(WINDOWS)
    if newest["live_days"] < min_days or not math.isfinite(backtest_mae) or backtest_mae <= 0:
        return None
    mae = newest[f"live_mae_{longest}d"]
    if not mae > factor * backtest_mae:
        return None
    reason = f"live MAE of the last {longest} days {mae:,.0f} is {mae / backtest_mae:.2f}x its backtest MAE {backtest_mae:,.0f} (limit {factor}x)"
    levels = {int(name.split("_")[2]): name for name in newest if name.startswith("live_coverage_")}
    if not levels:
        return reason
    level = max(levels)
    covered = newest[levels[level]]
    if not covered < level / 100 - coverage_margin:
        return None
    return f"{reason}; its {level}% interval covered {covered:.0%} of them (limit {level / 100 - coverage_margin:.0%})"


def shown_forecasts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per day, the last forecast kept for it (from the most data; the newer version on a tie): the one a user read."""
    order = forecasts.assign(version_number=forecasts["model_version"].astype(int))
    order = order.sort_values(["data_through", "version_number"]).drop_duplicates(DATE, keep="last")
    return order.drop(columns="version_number").sort_values(DATE).reset_index(drop=True)


def interval_bounds(forecasts: pd.DataFrame, level: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of one interval level per row (NaN where unbounded or not kept)."""
    pairs = [interval.get(level, [None, None]) for interval in forecasts["intervals"]]
    bounds = np.array(pairs, dtype=float).reshape(-1, 2)  # None -> NaN
    return bounds[:, 0], bounds[:, 1]
