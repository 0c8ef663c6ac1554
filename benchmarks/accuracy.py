"""Accuracy side by side: the default LSTM, the notebook recipe, naive baselines and statistical peers.

Two rolling-origin protocols, one step ahead (as the notebook):
  notebook  the first 185 days, the last 31 of them as test, models fitted once before them;
  recent    all days, the last 60 as test, models refitted every 7 days.
Every model sees only days before each origin, and every one goes through the product's own
forecaster contract (tasks/forecasters.py) and backtest, the statsforecast peers included.
Prints MAE (MAPE) per protocol and the prediction-interval coverage, and writes every
metric to CSV and markdown.

    make bench-accuracy
    .venv/bin/python benchmarks/accuracy.py --data my_city.csv --config my_city.toml --seeds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from schemas.daily import DATE  # noqa: E402
from tasks.backtest import Backtest, run_backtest  # noqa: E402
from tasks.config import BacktestConfig, Settings, load_settings  # noqa: E402
from tasks.forecasters import make_forecaster  # noqa: E402
from tasks.input_file import read_history_file  # noqa: E402

PROTOCOLS = {
    "notebook": BacktestConfig(first_days_only=185, test_days=31, refit_every=0),
    "recent": BacktestConfig(test_days=60, refit_every=7),
}
PEERS_AND_BASELINES = ["naive", "seasonal_naive", "auto_ets", "auto_theta", "auto_arima"]


@dataclass
class ModelRuns:
    """One configuration's backtests, one per seed."""

    label: str
    runs: list[Backtest]
    seconds: list[float]


def settings_for(config: Path | None, data: Path | None, overrides: list[str]) -> Settings:
    updates = {"data": {"path": str(data)}} if data else None
    return load_settings(config, overrides, updates, root=Path.cwd())


def fit_of(settings: Settings, kind: str):
    """The backtest's fit function of one forecaster kind with these settings."""
    model = settings.model.model_copy(update={"kind": kind})
    return lambda train: make_forecaster(kind, settings.data, model).fit(train)


def backtest_seeds(settings: Settings, history: pd.DataFrame, protocol: BacktestConfig, seeds: int) -> ModelRuns:
    runs, seconds = [], []
    for i in range(seeds):
        seeded = settings.model_copy(
            update={"model": settings.model.model_copy(update={"random_seed": settings.model.random_seed + i})}
        )
        start = time.perf_counter()
        runs.append(run_backtest(history, {"lstm": fit_of(seeded, "lstm")}, protocol, seeded.model.horizon))
        seconds.append(time.perf_counter() - start)
        print(
            f"    random seed {seeded.model.random_seed}: MAE {runs[-1].metrics['lstm']['mae']:,.0f} ({seconds[-1]:.0f} s)",
            flush=True,
        )
    return ModelRuns(settings.preset, runs, seconds)


def summary_rows(protocol: str, peers: Backtest, peer_seconds: float, model_runs: list[ModelRuns]) -> list[dict]:
    """Long rows: one per (protocol, peer or baseline), one per (LSTM, seed)."""
    rows = [
        {
            "protocol": protocol,
            "forecaster": name,
            "seed": "",
            **s.metrics,
            **{f"coverage_{lv}": v for lv, v in s.coverage.items()},
            "seconds": peer_seconds,
        }
        for name, s in peers.scores.items()
    ]
    for runs in model_runs:
        for i, run in enumerate(runs.runs):
            scores = run.scores["lstm"]
            coverage = {f"coverage_{level}": value for level, value in scores.coverage.items()}
            rows.append(
                {
                    "protocol": protocol,
                    "forecaster": f"lstm {runs.label}",
                    "seed": str(i),
                    **scores.metrics,
                    **coverage,
                    "seconds": runs.seconds[i],
                    "epochs": statistics.mean(scores.epochs),
                }
            )
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
    lines += [
        "| " + " | ".join([*map(str, index), *(f"{v:.1f}" for v in row)]) + " |"
        for index, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="daily CSV (default: the config's data.path, else the bundled sample)")
    parser.add_argument("--config", type=Path, help="TOML config: the data format and the default model")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the default model's config"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per LSTM on each protocol")
    parser.add_argument(
        "--recipe-recent-seeds",
        type=int,
        default=1,
        help="seeds of the notebook recipe on 'recent' (slow: 9 fits of 200 full-batch epochs)",
    )
    parser.add_argument("--skip-recipe", action="store_true", help="leave the notebook recipe out (when tuning)")
    parser.add_argument("--protocols", default="notebook,recent")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "benchmarks")
    args = parser.parse_args()

    started = time.perf_counter()
    # The config supplies the data format (and any model settings); the rows are the default preset and the recipe.
    default = settings_for(args.config, args.data, ["preset=default", *args.overrides])
    recipe = default.model_copy(update={"model": load_settings(None, ["preset=seed"]).model})
    history = read_history_file(default.data.path, default.data)
    print(f"{default.data.path}: {len(history)} days, {history[DATE].min().date()} .. {history[DATE].max().date()}", flush=True)

    rows, seeds = [], {}
    for name in args.protocols.split(","):
        protocol = PROTOCOLS[name]
        print(f"\nprotocol {name}: {protocol.model_dump()}", flush=True)
        start = time.perf_counter()
        peers = run_backtest(
            history, {kind: fit_of(default, kind) for kind in PEERS_AND_BASELINES}, protocol, default.model.horizon
        )
        peer_seconds = time.perf_counter() - start
        print(
            "  " + ", ".join(f"{k} {s.metrics['mae']:,.0f}" for k, s in peers.scores.items()) + f" ({peer_seconds:.0f} s)",
            flush=True,
        )
        print("  default LSTM", flush=True)
        runs = [backtest_seeds(default, history, protocol, args.seeds)]
        if not args.skip_recipe:
            print("  notebook recipe (seed preset)", flush=True)
            runs.append(backtest_seeds(recipe, history, protocol, args.recipe_recent_seeds if name == "recent" else args.seeds))
            runs[1].label = "seed (notebook recipe)"
        seeds |= {(f"lstm {r.label}", name): len(r.runs) for r in runs}
        rows += summary_rows(name, peers, peer_seconds, runs)

    table = pd.DataFrame(rows)
    markdown = table_markdown(table, seeds)
    coverage = (
        table.dropna(subset=["coverage_80"])
        .groupby(["forecaster", "protocol"], sort=False)[["coverage_80", "coverage_95"]]
        .mean()
    )
    took = time.perf_counter() - started
    print(f"\nMAE in travellers (MAPE), one step ahead, {default.data.path.name}:\n\n{markdown}")
    print(f"\nprediction-interval coverage (nominal 80% / 95%):\n{(coverage * 100).round(1).to_string()}")
    print(f"\nbenchmark took {took / 60:.1f} min")

    out = args.out / f"accuracy-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "accuracy.csv", index=False)
    (out / "accuracy.md").write_text(
        f"# Accuracy, {default.data.path.name}\n\nMAE in travellers (MAPE), one step ahead.\n\n{markdown}\n\n"
        f"Interval coverage (%, nominal 80 / 95):\n\n{_markdown(coverage * 100)}\n\nTook {took / 60:.1f} min.\n"
    )
    print(f"written: {out}/accuracy.csv, accuracy.md")


if __name__ == "__main__":
    main()
