"""Accuracy side by side: the default LSTM, the notebook recipe, naive baselines and statistical peers.

Two rolling-origin protocols, one step ahead (as the notebook):
  notebook  the first 185 days, the last 31 of them as test, models fitted once before them;
  recent    all days, the last 60 as test, models refitted every 7 days.
Every model sees only days before each origin. Prints MAE (MAPE) per protocol and the
prediction-interval coverage, and writes every metric to CSV and markdown.

    make bench-accuracy                      # builds .venv-peers for statsforecast, then runs this
    .venv/bin/python benchmarks/accuracy.py --data my_city.csv --config my_city.toml --seeds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from schemas.daily import DATE, TARGET  # noqa: E402
from tasks.backtest import Backtest, lstm_fit, run_backtest  # noqa: E402
from tasks.config import BacktestConfig, Settings, load_settings  # noqa: E402
from tasks.ingest import ingest_file  # noqa: E402

PROTOCOLS = {
    "notebook": BacktestConfig(history_days=185, test_days=31, refit_every=0),
    "recent": BacktestConfig(test_days=60, refit_every=7),
}
PEERS = ["AutoETS", "AutoTheta", "AutoARIMA"]


@dataclass
class ModelRuns:
    """One configuration's backtests, one per seed."""

    label: str
    runs: list[Backtest]
    seconds: list[float]


def settings_for(config: Path | None, data: Path | None, overrides: list[str]) -> Settings:
    updates = {"data": {"path": str(data)}} if data else None
    return load_settings(config, overrides, updates, root=Path.cwd())


def backtest_seeds(settings: Settings, history: pd.DataFrame, protocol: BacktestConfig, seeds: int, extra) -> ModelRuns:
    runs, seconds = [], []
    for i in range(seeds):
        model = settings.model.model_copy(update={"seed": settings.model.seed + i})
        start = time.perf_counter()
        runs.append(run_backtest(history, lstm_fit(settings.data, model), protocol, model.horizon, extra))
        seconds.append(time.perf_counter() - start)
        print(f"    seed {model.seed}: MAE {runs[-1].metrics['model']['mae']:,.0f} ({seconds[-1]:.0f} s)", flush=True)
    return ModelRuns(settings.preset, runs, seconds)


def peer_forecasts(history: pd.DataFrame, protocol: BacktestConfig, python: Path) -> dict[str, np.ndarray]:
    """statsforecast's peers on the same days, run in their own environment (pandas < 3)."""
    if not python.exists():
        print(f"  peers skipped: {python} not found (make peers-env builds it)", flush=True)
        return {}
    window = history.iloc[: protocol.history_days] if protocol.history_days else history
    with tempfile.TemporaryDirectory() as tmp:
        series, out = Path(tmp) / "series.csv", Path(tmp) / "peers.csv"
        window[[DATE, TARGET]].assign(date=window[DATE].dt.strftime("%Y-%m-%d")).to_csv(series, index=False)
        command = [str(python), str(ROOT / "benchmarks" / "peers.py"), "--series", str(series),
                   "--test-days", str(protocol.test_days), "--refit-every", str(protocol.refit_every), "--out", str(out)]
        subprocess.run(command, check=True)
        long = pd.read_csv(out)
    days = window[DATE].dt.strftime("%Y-%m-%d").iloc[-protocol.test_days :]
    wide = long.pivot(index="date", columns="model", values="forecast").reindex(days)
    return {name: wide[name].to_numpy(dtype=float)[:, None] for name in PEERS if name in wide}


def summary_rows(protocol: str, model_runs: list[ModelRuns]) -> list[dict]:
    """Long rows: one per (protocol, forecaster) with the mean over seeds, and one per seed."""
    first = model_runs[0].runs[0]
    rows = [{"protocol": protocol, "forecaster": name, "seed": "", **metrics} for name, metrics in first.metrics.items() if name != "model"]
    for runs in model_runs:
        for i, run in enumerate(runs.runs):
            coverage = {f"coverage_{int(level * 100)}": value for level, value in run.coverage.items()}
            rows.append({"protocol": protocol, "forecaster": f"lstm {runs.label}", "seed": str(i), **run.metrics["model"], **coverage,
                         "seconds": runs.seconds[i], "epochs": statistics.mean(run.epochs)})
    return rows


def table_markdown(rows: pd.DataFrame, seeds: dict[str, int]) -> str:
    """MAE (MAPE) per protocol: baselines and peers once, each LSTM as the mean over its seeds."""
    means = rows.groupby(["forecaster", "protocol"], sort=False)[["mae", "mape"]].mean()
    protocols = list(dict.fromkeys(rows["protocol"]))
    order = list(dict.fromkeys(rows["forecaster"]))
    lines = ["| model | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for name in order:
        cells = []
        for protocol in protocols:
            if (name, protocol) in means.index:
                mae, mape = means.loc[(name, protocol)]
                n = seeds.get((name, protocol), 1)
                cells.append(f"{mae:,.0f} ({mape:.1f}%)" + (f", mean of {n} seeds" if n > 1 else ""))
            else:
                cells.append("—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(frame: pd.DataFrame) -> str:
    header = [*frame.index.names, *frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join([*map(str, index), *(f"{v:.1f}" for v in row)]) + " |" for index, row in zip(frame.index, frame.to_numpy())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="daily CSV (default: the config's data.path, else the bundled sample)")
    parser.add_argument("--config", type=Path, help="TOML config: the data format and the default model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the default model's config")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per LSTM on each protocol")
    parser.add_argument("--recipe-recent-seeds", type=int, default=1, help="seeds of the notebook recipe on 'recent' (slow: 9 fits of 200 full-batch epochs)")
    parser.add_argument("--skip-recipe", action="store_true", help="leave the notebook recipe out (when tuning)")
    parser.add_argument("--protocols", default="notebook,recent")
    parser.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers" / "bin" / "python")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "benchmarks")
    args = parser.parse_args()

    started = time.perf_counter()
    # The config supplies the data format (and any model settings); the rows are the default preset and the recipe.
    default = settings_for(args.config, args.data, ["preset=default", *args.overrides])
    recipe = default.model_copy(update={"model": load_settings(None, ["preset=seed"]).model})
    history = ingest_file(default.data.path, default.data)
    print(f"{default.data.path}: {len(history)} days, {history[DATE].min().date()} .. {history[DATE].max().date()}", flush=True)

    rows, seeds = [], {}
    for name in args.protocols.split(","):
        protocol = PROTOCOLS[name]
        print(f"\nprotocol {name}: {protocol.model_dump()}", flush=True)
        extra = peer_forecasts(history, protocol, args.peers_python)
        print("  default LSTM", flush=True)
        runs = [backtest_seeds(default, history, protocol, args.seeds, extra)]
        recipe_seeds = args.recipe_recent_seeds if name == "recent" else args.seeds
        if args.skip_recipe:
            rows += summary_rows(name, runs)
            continue
        print("  notebook recipe (seed preset)", flush=True)
        runs.append(backtest_seeds(recipe, history, protocol, recipe_seeds, extra))
        runs[1].label = "seed (notebook recipe)"
        seeds |= {(f"lstm {r.label}", name): len(r.runs) for r in runs}
        rows += summary_rows(name, runs)

    table = pd.DataFrame(rows)
    markdown = table_markdown(table, seeds)
    coverage = table.dropna(subset=["coverage_80"]).groupby(["forecaster", "protocol"], sort=False)[["coverage_80", "coverage_95"]].mean()
    took = time.perf_counter() - started
    print(f"\nMAE in travellers (MAPE), one step ahead, {default.data.path.name}:\n\n{markdown}")
    print(f"\nprediction-interval coverage (nominal 80% / 95%):\n{(coverage * 100).round(1).to_string()}")
    print(f"\nbenchmark took {took / 60:.1f} min")

    out = args.out / f"accuracy-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "accuracy.csv", index=False)
    (out / "accuracy.md").write_text(
        f"# Accuracy, {default.data.path.name}\n\nMAE in travellers (MAPE), one step ahead.\n\n{markdown}\n\n"
        f"Interval coverage (%, nominal 80 / 95):\n\n{_markdown(coverage * 100)}\n\nTook {took / 60:.1f} min.\n"
    )
    print(f"written: {out}/accuracy.csv, accuracy.md")


if __name__ == "__main__":
    main()
