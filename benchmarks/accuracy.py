"""Accuracy side by side on the development set: the default LSTM, naive baselines, statistical peers.

Every series of the development set (or the --data files), two rolling-origin protocols,
one step ahead (as the notebook):
  notebook  the first 185 days, the last 31 of them as test, models fitted once before them;
  recent    all days, the last 60 as test, models refitted every 7 days;
  short     (--protocols short) the last 31 days as test, models fitted once on the 154 days before them only:
            a city whose history began a few months ago.
Every model sees only days before each origin, and every one goes through the product's own
forecaster contract (tasks/forecasters.py) and backtest, the statsforecast peers included.
Prints one table (per series and protocol: each peer and baseline, the default LSTM's mean
and worst seed, its ratio to the best peer) and writes every metric to CSV and markdown, and
every forecast beside its actual value (forecasts.csv: which days a window's MAE comes from).

--validation runs the procedure that chose the default (tasks/selection.py) instead: each
protocol moved back before its test days (--origins 2: and once more before that window),
every candidate weighting scored there against the best peer, the lowest geometric mean
ratio chosen. No test day is read.

    make bench-accuracy
    .venv/bin/python benchmarks/accuracy.py --data my_city.csv --config my_city.toml [--validation]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from schemas.daily import DATE  # noqa: E402
from tasks.backtest import Backtest, backtest_window, check_history_length, run_backtest, warm_refits  # noqa: E402
from tasks.config import BacktestConfig, Settings, load_settings  # noqa: E402
from tasks.errors import HistoryTooShort  # noqa: E402
from tasks.forecasters import make_forecaster  # noqa: E402
from tasks.input_file import read_history_file  # noqa: E402
from tasks.selection import (  # noqa: E402
    NETWORKS_ALONE,
    candidate_fits,
    candidate_of,
    choose,
    ratios_to_best_peer,
    rolling,
    validation_protocol,
    without,
)

DEV_SET = [
    ROOT / "data/sample/nyc_subway_covid.csv",
    ROOT / "benchmarks/devset/nyc_bus.csv",
    ROOT / "benchmarks/devset/nyc_lirr.csv",
    ROOT / "benchmarks/devset/nyc_metro_north.csv",
    ROOT / "benchmarks/devset/bart_covid.csv",
]
PROTOCOLS = {
    "notebook": BacktestConfig(first_days_only=185, test_days=31, refit_every=0),
    "recent": BacktestConfig(test_days=60, refit_every=7),
    # a city whose history began a few months ago: the notebook's 154 days, today (not run by default)
    "short": BacktestConfig(test_days=31, refit_every=0, window_days=154),
}
PEERS_AND_BASELINES = ["naive", "seasonal_naive", "auto_ets", "auto_theta", "auto_arima"]
PEERS = ["auto_ets", "auto_theta", "auto_arima"]
LSTM = "lstm default"
NETWORKS = "lstm networks alone"
RECIPE = "lstm seed (notebook recipe)"


def settings_for(config: Path | None, data: Path | None, overrides: list[str]) -> Settings:
    updates = {"data": {"path": str(data)}} if data else None
    return load_settings(config, overrides, updates, root=Path.cwd())


def with_seed(settings: Settings, offset: int) -> Settings:
    model = settings.model.model_copy(update={"random_seed": settings.model.random_seed + offset})
    return settings.model_copy(update={"model": model})


def fit_of(settings: Settings, kind: str):
    """The backtest's fit function of one forecaster kind with these settings (refits warm-started as the product's)."""
    fit = lambda train, start: make_forecaster(kind, settings.data, settings.model).warm_from(start).fit(train)
    return warm_refits(fit, settings.model.warm_start_days)


def score_rows(backtest: Backtest, seconds: float, **keys) -> list[dict]:
    """One row per forecaster of a backtest: its metrics and interval coverage."""
    return [
        keys
        | {"forecaster": name, **s.metrics, **{f"coverage_{lv}": v for lv, v in s.coverage.items()}, "seconds": seconds}
        | ({"epochs": sum(s.epochs) / len(s.epochs)} if any(s.epochs) else {})
        for name, s in backtest.scores.items()
    ]


def timed_backtest(history: pd.DataFrame, fits: dict, protocol: BacktestConfig, horizon: int) -> tuple[Backtest, float]:
    start = time.perf_counter()
    result = run_backtest(history, fits, protocol, horizon)
    return result, time.perf_counter() - start


def day_rows(backtest: Backtest, **keys) -> list[dict]:
    """One row per forecaster, forecast day and step: the actual value and the forecast."""
    steps = range(backtest.actual.shape[1])
    return [
        keys
        | {"forecaster": name, "first_day": str(day)[:10], "step": step + 1, "actual": actual[step], "forecast": forecast[step]}
        for name, s in backtest.scores.items()
        for day, actual, forecast in zip(backtest.dates, backtest.actual, s.forecast, strict=True)
        for step in steps
    ]


def candidates(args: argparse.Namespace) -> list[str]:
    """The candidates --validation scores: every rule, with --without's members left out, and --rolling's."""
    listed = without(args.without)
    return rolling(listed) if args.rolling else listed


def pretraining(args: argparse.Namespace) -> list[str]:
    """With --pretrain, the override that pretrains every series' networks on the others (a fit skips its own file)."""
    if not args.pretrain:
        return []
    paths = [str(p.resolve()) for p in (args.pretrain_on or args.data or DEV_SET)]
    return [f"data.pretrain_paths={json.dumps(paths)}"]


def windows(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(protocol, origin) of every window a run scores: origin 0 is the test days, 1.. the validation windows."""
    origins = range(1, args.origins + 1) if args.validation else [0]
    return [(name, origin) for name in args.protocols.split(",") for origin in origins]


def run_series(path: Path, args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Every protocol on one series: peers and baselines once, the LSTM (or the candidates) per seed.
    Returns the score rows and the forecast rows (`day_rows`)."""
    default = settings_for(args.config, path, ["preset=default", *pretraining(args), *args.overrides])
    recipe = default.model_copy(update={"model": load_settings(None, ["preset=seed"]).model})
    history = read_history_file(default.data.path, default.data)
    print(f"\n{path.name}: {len(history)} days, {history[DATE].min().date()} .. {history[DATE].max().date()}", flush=True)
    rows, days = [], []
    for name, origin in windows(args):
        protocol = PROTOCOLS[name]
        if args.validation:
            protocol = validation_protocol(protocol, len(history), origin)
        keys = {"series": path.stem, "protocol": name if origin <= 1 else f"{name} @{origin}"}
        peers, seconds = timed_backtest(
            history, {kind: fit_of(default, kind) for kind in PEERS_AND_BASELINES}, protocol, default.model.horizon
        )
        rows += score_rows(peers, seconds, **keys, seed="")
        days += day_rows(peers, **keys, seed="")
        print(f"  {keys['protocol']}: " + ", ".join(f"{k} {s.metrics['mae']:,.0f}" for k, s in peers.scores.items()), flush=True)
        for i in range(args.seeds):
            seeded = with_seed(default, i)
            if args.validation:
                fits = candidate_fits(seeded.data, seeded.model, candidates(args))
            elif seeded.model.combine_with:  # the networks alone (the default before combining) from the same fits
                own = candidate_of(seeded.model)
                both = candidate_fits(seeded.data, seeded.model, [own, NETWORKS_ALONE])
                fits = {LSTM: both[f"lstm {own}"], NETWORKS: both[f"lstm {NETWORKS_ALONE}"]}
            else:
                fits = {LSTM: fit_of(seeded, "lstm")}
            result, seconds = timed_backtest(history, fits, protocol, default.model.horizon)
            rows += score_rows(result, seconds, **keys, seed=str(i))
            days += day_rows(result, **keys, seed=str(i))
            shown = ", ".join(f"{k} {s.metrics['mae']:,.0f}" for k, s in result.scores.items())
            print(f"    seed {seeded.model.random_seed}: {shown} ({seconds:.0f} s)", flush=True)
        recipe_seeds = 0 if args.validation else (args.recipe_seeds if name == "notebook" else args.recipe_recent_seeds)
        for i in range(recipe_seeds):
            result, seconds = timed_backtest(history, {RECIPE: fit_of(with_seed(recipe, i), "lstm")}, protocol, 1)
            rows += score_rows(result, seconds, **keys, seed=str(i))
            days += day_rows(result, **keys, seed=str(i))
            print(f"    recipe seed {recipe.model.random_seed + i}: MAE {result.metrics[RECIPE]['mae']:,.0f}", flush=True)
    return rows, days


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per series and protocol: each peer's and baseline's MAE, each LSTM's mean and worst seed, and the
    mean's ratio to the best statistical peer and to seasonal naive."""
    out = []
    for (series, protocol), group in rows.groupby(["series", "protocol"], sort=False):
        fixed = group[group["seed"] == ""].set_index("forecaster")["mae"]
        best = fixed[PEERS].idxmin()
        line = {"series": series, "protocol": protocol, **fixed.to_dict(), "best peer": best}
        for name, seeds in group[group["seed"] != ""].groupby("forecaster", sort=False)["mae"]:
            mean = seeds.mean()
            line |= {
                f"{name} mean": mean,
                f"{name} worst": seeds.max(),
                f"{name} / best peer": mean / fixed[best],
                f"{name} / seasonal naive": mean / fixed["seasonal_naive"],
                f"{name} worst / mean": seeds.max() / mean,
            }
        out.append(line)
    return pd.DataFrame(out)


def candidate_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Per series, protocol and seed: each candidate's MAE over the best of seasonal naive and the peers."""
    out = []
    for _, group in rows.groupby(["series", "protocol"], sort=False):
        fixed = group[group["seed"] == ""]
        for _, seeded in group[group["seed"] != ""].groupby("seed"):
            maes = dict(zip(fixed["forecaster"], fixed["mae"], strict=True)) | dict(
                zip(seeded["forecaster"], seeded["mae"], strict=True)
            )
            out += [{"candidate": c, "ratio": r} for c, r in ratios_to_best_peer(maes, ["seasonal_naive", *PEERS]).items()]
    return pd.DataFrame(out)


def markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if value < 10 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|---" * len(table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="daily CSV, repeatable (default: the development set)")
    parser.add_argument("--config", type=Path, help="TOML config: the data format and the default model")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the default model's config"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per LSTM on each protocol")
    parser.add_argument("--recipe-seeds", type=int, default=0, help="seeds of the notebook recipe on 'notebook'")
    parser.add_argument(
        "--recipe-recent-seeds",
        type=int,
        default=0,
        help="seeds of the recipe on 'recent' (slow: 9 fits of 200 full-batch epochs)",
    )
    parser.add_argument("--validation", action="store_true", help="score the candidate weightings before the test days")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="MEMBER",
        help="with --validation: each rule also scored with this member of model.combine_with left out (repeatable)",
    )
    parser.add_argument(
        "--rolling",
        action="store_true",
        help="with --validation: each rule also scored with model.rolling_weights (`<rule> rolling`)",
    )
    parser.add_argument(
        "--pretrain",
        action="store_true",
        help="data.pretrain_paths: each series' networks pretrained on the run's other series (tasks/pretraining.py)",
    )
    parser.add_argument(
        "--pretrain-on", type=Path, action="append", default=[], metavar="FILE", help="with --pretrain: these files instead"
    )
    parser.add_argument(
        "--origins",
        type=int,
        default=1,
        help="with --validation: validation windows per protocol, each ending where the next begins (`recent @2`)",
    )
    parser.add_argument("--protocols", default="notebook,recent")
    parser.add_argument("--jobs", type=int, default=1, help="series run side by side in separate processes")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "benchmarks")
    args = parser.parse_args()
    if args.origins != 1 and not args.validation:
        parser.error("--origins moves the validation windows: use it with --validation (the test days are one window)")

    started = time.perf_counter()
    paths = args.data or DEV_SET
    # Here, before any fit (each series' candidates would fail after its first fold) and outside the pool (a
    # SystemExit in a pool's worker loses its task, and the pool waits for it forever).
    combine_with = settings_for(args.config, paths[0], ["preset=default", *args.overrides]).model.combine_with
    if unknown := set(args.without) - set(combine_with):
        raise SystemExit(f"--without {', '.join(sorted(unknown))}: not in model.combine_with {combine_with}")
    for path in paths:  # every window within every series' days, with enough days before it to fit the default
        settings = settings_for(args.config, path, ["preset=default", *args.overrides])
        history = read_history_file(path, settings.data)
        lstm = make_forecaster("lstm", settings.data, settings.model)
        for name, origin in windows(args):
            label = name if origin <= 1 else f"{name} @{origin}"
            try:
                protocol = validation_protocol(PROTOCOLS[name], len(history), origin) if args.validation else PROTOCOLS[name]
            except ValueError as error:
                raise SystemExit(f"{path} ({len(history)} days), protocol {label}: {error}") from None
            try:  # the product's own rule (train refuses the same history); the remedy here is another protocol
                check_history_length(history, protocol, lstm.min_fit_days, lstm.describe())
            except HistoryTooShort:
                raise SystemExit(
                    f"{path} ({len(history)} days), protocol {label}: {len(backtest_window(history, protocol))} days, of "
                    f"which the last {protocol.test_days} are forecast; the default LSTM needs {lstm.min_fit_days} days "
                    "before them to fit. Leave the protocol out (--protocols) or give a longer history."
                ) from None
    if args.jobs > 1:  # the series' processes fill the cores: no helper process beside each fit (the same fits)
        args.overrides = ['model.peer_fits="inline"', *args.overrides]
        # A stop (SIGTERM, Ctrl-C) leaves the block by an exception, and leaving it terminates the series'
        # processes: they would otherwise go on fitting for as long as their series takes.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            per_series = pool.starmap(run_series, [(path, args) for path in paths], chunksize=1)
    else:
        per_series = [run_series(path, args) for path in paths]
    rows = pd.DataFrame([row for series, _ in per_series for row in series])
    table = summary_table(rows)
    took = time.perf_counter() - started
    what = "validation windows (before the test days)" if args.validation else "test days"
    text = f"MAE in travellers, one step ahead, on the {what}:\n\n{markdown(table)}\n"
    if args.validation:
        choice, means = choose(candidate_ratios(rows))
        text += "\nGeometric mean of MAE / best of seasonal naive and the peers, over every series, protocol and seed:\n\n"
        text += "\n".join(f"- {c}: {means[c]:.3f}" for c in candidates(args)) + f"\n\nChosen: **{choice}**\n"
    coverage = (
        rows.dropna(subset=["coverage_80"])
        .groupby(["series", "protocol", "forecaster"], sort=False)[["coverage_80", "coverage_95"]]
        .mean()
    )
    print(f"\n{text}\nprediction-interval coverage (nominal 80% / 95%):\n{(coverage * 100).round(1).to_string()}")
    print(f"\nbenchmark took {took / 60:.1f} min")
    out = args.out / f"accuracy{'-validation' if args.validation else ''}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "accuracy.csv", index=False)
    pd.DataFrame([day for _, days in per_series for day in days]).to_csv(out / "forecasts.csv", index=False)
    table.to_csv(out / "summary.csv", index=False)
    (out / "accuracy.md").write_text(f"# Accuracy\n\n{text}\nTook {took / 60:.1f} min.\n")
    print(f"written: {out}/accuracy.csv, summary.csv, forecasts.csv, accuracy.md")


if __name__ == "__main__":
    main()
