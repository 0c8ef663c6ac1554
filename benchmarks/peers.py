"""Statistical peers (statsforecast AutoETS, AutoTheta, AutoARIMA, weekly season) on one backtest.

Runs in its own environment: statsforecast needs pandas<3, the project pandas 3 (make peers
builds `.venv-peers`). Reads a CSV of (date, travellers), forecasts each of the last
`--test-days` days one step ahead from the days before it, refitting every `--refit-every`
days (0: fitted once, before the first test day), and writes (date, model, forecast) rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

SEASON = 7


def peer_forecasts(series: pd.DataFrame, test_days: int, refit_every: int) -> pd.DataFrame:
    """One-step-ahead forecasts of every peer for the last `test_days` days, long format."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    frame = pd.DataFrame({"unique_id": "series", "ds": pd.to_datetime(series["date"]), "y": series["travellers"].astype(float)})
    models = [AutoETS(season_length=SEASON), AutoTheta(season_length=SEASON), AutoARIMA(season_length=SEASON)]
    forecaster = StatsForecast(models=models, freq="D", n_jobs=1)
    folds = forecaster.cross_validation(df=frame, h=1, step_size=1, n_windows=test_days, refit=refit_every or False)
    long = folds.melt(id_vars=["ds"], value_vars=[m.alias for m in models], var_name="model", value_name="forecast")
    return long.rename(columns={"ds": "date"}).assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True, help="CSV with columns date, travellers")
    parser.add_argument("--test-days", type=int, required=True)
    parser.add_argument("--refit-every", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    forecasts = peer_forecasts(pd.read_csv(args.series), args.test_days, args.refit_every)
    forecasts.to_csv(args.out, index=False)
    print(f"peers: {len(forecasts)} forecasts in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
