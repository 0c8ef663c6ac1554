"""Speed side by side, as ratios to the notebook recipe trained by a plain Keras script.

Measured in one run, alternating the order each repeat, medians reported (shared, noisy
machines: only the ratios mean something):
  1 bare      benchmarks/bare_seed.py: the seed preset's training as a plain script (the reference)
  2 seed      `travel-forecast train --set preset=seed`, whole process
  3 default   `travel-forecast train`, whole process (backtest + final fit + registration)
  4 no-data   `travel-forecast retrain` when no new data arrived, whole process
  5 predict   `travel-forecast predict --days 7`, whole process
  6 FLOP/s    training throughput of the default network against this machine's matmul rate
Without PREFECT_API_URL every command starts Prefect's temporary server (about 3 s); 2, 3
and 4 are measured again against a `prefect server start` that the benchmark runs, as a
scheduled deployment has. `--op-threads N` adds 2 and 3 again with TensorFlow's threads per
operation set to N (TF_NUM_INTRAOP_THREADS; its default is every core). `--peer-fits` measures
only 1 and 3 with a server, and 3 again with the statistical peers fitted in the training process
after the networks (`model.peer_fits = "inline"`) instead of in a helper process beside them.

With `--members` it measures instead the default ensemble's fit on the history before the
backtest's test days, alternating: its networks one after the other (the product's
tasks/network.fit_network) and side by side (`fit_side_by_side`, tried here, not in the
product); `--jobs N` runs N such fits at once in N processes, as two series on two Dask
workers or `accuracy.py --jobs 2` do. `--warm` times instead the fit of a daily retrain: every
network starting from an earlier fit's weights (one fit of the same days, made once per process
before the timed rounds) and stopping after `model.warm_start_patience` epochs without gain.

With `--daily` it measures instead, beside 1, the daily retrain (with a running Prefect server): the history
ends on the data's last day but one, its latest version was fitted on it, and the versions fitted before the
`test_days` and before the held-out days of the fit on every day too (as after a month of daily retrains); each
round restores that state, lands the last day and times `travel-forecast retrain`: the default (the backtest
forecasting with the version fitted before its test days, `backtest.reuse_fit_days`; the networks starting from
the latest version's weights, `model.warm_start_days`; the peers' fits lent by the versions fitted on their
days), and everything fitted afresh (both 0: the warm start being part of the fit key, no version matches).
With `--daily --series CONFIG` (a long-format config) every series is in that state and gets its new day: the
retrain of all of them one after the other in one process (as a deployment's run over many series) and on 2 Dask
workers, as seconds per series over the recipe's (the fixed cost of a process shared by its series).

With `--exit` it measures instead how long a `travel-forecast` process takes to end once its command returned,
holding what a retrain holds (TensorFlow, Keras, MLflow, Prefect, statsforecast): as the program ends now
(flows.cli.command: the exit handlers, then no interpreter teardown) and with the interpreter's teardown (the
program's end before 2026-12-03: `sys.exit(main())`).

With `--series CONFIG` (a long-format config, e.g. config/mta_modes.toml: 7 series) it measures
instead, beside 1: `travel-forecast train` of every series with 1 and with 2 Dask workers, as
series per minute and as seconds per series over 1.

    .venv/bin/python benchmarks/speed.py [--repeat 3] [--data FILE] [--config FILE] [--op-threads 1 | --peer-fits]
    .venv/bin/python benchmarks/speed.py --daily [--repeat 3] [--data FILE] [--config FILE]
    .venv/bin/python benchmarks/speed.py --daily --series config/mta_modes.toml [--repeat 3]
    .venv/bin/python benchmarks/speed.py --series config/mta_modes.toml [--repeat 1]
    .venv/bin/python benchmarks/speed.py --exit [--repeat 3]
    .venv/bin/python benchmarks/speed.py --members [--warm] [--jobs 2] [--repeat 3] [--data FILE] [--config FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
TARGETS = {"seed": 1.10, "default": 0.25, "no-data": 0.05}
OP_THREADS_MEASURED = ("seed", "default")  # measured again with --op-threads


def workspace_config(root: Path, base: Path | None, data: Path | None) -> Path:
    """A config whose outputs, MLflow store, landing folder and history live under `root`."""
    import tomllib

    values = tomllib.loads(base.read_text()) if base else {}
    lines = [f'output_dir = "{root / "out"}"']
    if "preset" in values:
        lines.insert(0, f'preset = "{values["preset"]}"')
    sections = {
        "data": values.get("data", {}) | ({"path": str(data.resolve())} if data else {}),
        "model": values.get("model", {}),
        "backtest": values.get("backtest", {}),
        "mlflow": values.get("mlflow", {}) | {"store_dir": str(root / "mlruns")},
        "retrain": values.get("retrain", {}) | {"incoming_dir": str(root / "incoming"), "history_path": str(root / "history.db")},
        "series": values.get("series", {}),  # each series' own settings of a long-format config
    }
    for name, section in sections.items():
        lines += toml_table(name, section)
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_table(name: str, values: dict) -> list[str]:
    """`[name]` with its keys, then its tables (`[name.key]`), as TOML lines."""
    lines = [f"[{name}]", *(f"{key} = {toml_value(value)}" for key, value in values.items() if not isinstance(value, dict))]
    for key, value in values.items():
        if isinstance(value, dict):
            lines += toml_table(f"{name}.{key}", value)
    return lines


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def timed(command: list[str], env: dict, *expect: str) -> float:
    """Wall time of a whole process; its output is kept only if it fails (or does not say each of `expect`, as
    often as it is listed)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    said = result.stdout + result.stderr
    missing = [text for text, times in Counter(expect).items() if said.count(text) < times]
    if result.returncode != 0 or missing:
        outcome = "failed" if result.returncode else f"did not say {missing}"
        raise RuntimeError(f"{' '.join(command)} {outcome}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return seconds


def matmul_rate(size: int = 2048, repeat: int = 5) -> float:
    """FLOP/s of a float32 matrix product on this machine (TensorFlow, all cores)."""
    import tensorflow as tf

    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def lstm_training_flops(model, samples: int) -> float:
    """FLOPs of one training epoch: 3x the forward pass (forward + backward), matmuls only."""
    flops = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "LSTM":
            steps, inputs = layer.input.shape[1], layer.input.shape[2]
            flops += steps * 2 * 4 * (inputs + layer.units) * layer.units
        elif kind == "Dense":
            flops += 2 * layer.input.shape[-1] * layer.units
    return 3 * flops * samples


def training_throughput(settings) -> tuple[float, float, int]:
    """(achieved FLOP/s, seconds, epochs) of fitting one default network on the full history."""
    from tasks.input_file import read_history_file
    from tasks.lstm import LstmForecaster

    history = read_history_file(settings.data.path, settings.data)
    single = LstmForecaster(settings.data, settings.model.model_copy(update={"ensemble": 1}))
    start = time.perf_counter()
    single.fit(history)
    seconds = time.perf_counter() - start
    train, validation = single.training_samples(history)
    per_sample = lstm_training_flops(single.network, 1)  # forward + backward
    flops = single.epochs_run * (per_sample * len(train) + per_sample / 3 * len(validation))  # validation: forward only
    return flops / seconds, seconds, single.epochs_run


def start_prefect_server(home: Path, env: dict) -> tuple[subprocess.Popen, str]:
    """`prefect server start` on a free port; returns the process and its API URL once healthy."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_env = env | {"PREFECT_HOME": str(home)}
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("prefect server did not start in 120 s")


def rounds(commands: dict[str, list[str]], envs: dict[str, dict], repeat: int, seconds: dict[str, list[float]]) -> None:
    """Every command once per round, the order reversed every other round."""
    for round_ in range(repeat):
        order = list(commands) if round_ % 2 == 0 else list(commands)[::-1]
        for name in order:
            seconds.setdefault(name, []).append(timed(commands[name], envs[name]))
            print(f"  round {round_ + 1} {name:16s} {seconds[name][-1]:7.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--out", type=Path, default=Path("outputs") / "benchmarks")
    parser.add_argument("--series", type=Path, help="a long-format config: series per minute with 1 and 2 Dask workers")
    parser.add_argument("--members", action="store_true", help="the ensemble's networks fitted apart vs side by side")
    parser.add_argument("--jobs", type=int, default=1, help="with --members: fits at once, each in its own process")
    parser.add_argument("--warm", action="store_true", help="with --members: every fit warm-started, as a daily retrain's")
    parser.add_argument("--op-threads", type=int, help="also: seed and default trains with TF_NUM_INTRAOP_THREADS set to this")
    parser.add_argument("--peer-fits", action="store_true", help="only: the default train, peers beside vs inline")
    parser.add_argument("--daily", action="store_true", help="the daily retrain, backtest fit reused vs fitted afresh")
    parser.add_argument("--exit", action="store_true", help="a command's end: without vs with the interpreter's teardown")
    args = parser.parse_args()
    if args.exit:
        exit_speed(args)
        return
    if args.daily:
        daily_speed(args)
        return
    if args.series:
        series_speed(args)
        return
    if args.members:
        members_speed(args)
        return

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    cli = str(BIN / "travel-forecast")
    data = ["--data", str(args.data)] if args.data else []
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = workspace_config(root, args.config, args.data)
        env |= {"PREFECT_HOME": str(root / "prefect-home-temporary")}  # the temporary servers' database, not ~/.prefect
        timed([cli, "retrain", "--init", "--config", str(config)], env)  # starts the history and a champion (not timed)
        commands = {
            "bare": [
                sys.executable,
                str(ROOT / "benchmarks" / "bare_seed.py"),
                *data,
                *(["--config", str(args.config)] if args.config else []),
            ],
            "seed": [cli, "train", "--config", str(config), "--set", "preset=seed"],
            "default": [cli, "train", "--config", str(config)],
            "no-data": [cli, "retrain", "--config", str(config)],
            "predict": [cli, "predict", "--days", "7", "--config", str(config)],
        }
        server, api_url = start_prefect_server(root / "prefect-home", env)
        served = env | {"PREFECT_API_URL": api_url}
        commands |= {f"{name}, server": command for name, command in commands.items() if name in ("seed", "default", "no-data")}
        # What comparing with the statsforecast peers costs a default train (backtest.compare).
        baselines_only = ["--set", 'backtest.compare=["seasonal_naive","naive"]']
        commands["default baselines only, server"] = [*commands["default"], *baselines_only]
        envs = {name: served if name.endswith(", server") else env for name in commands}
        if args.op_threads:  # TensorFlow's threads per op (its default: every core)
            for name in OP_THREADS_MEASURED:
                commands[f"{name}, op threads"] = commands[name]
                envs[f"{name}, op threads"] = env | {"TF_NUM_INTRAOP_THREADS": str(args.op_threads)}
        if args.peer_fits:  # the same fits, in a helper process beside the networks (the default) or after them
            commands = {name: commands[name] for name in ("bare", "default, server")}
            commands["default, peers inline, server"] = [*commands["default, server"], "--set", 'model.peer_fits="inline"']
            envs["default, peers inline, server"] = served
        try:
            rounds(commands, envs, args.repeat, seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)

    from tasks.config import load_settings

    settings = load_settings(args.config, [], {"data": {"path": str(args.data)}} if args.data else None, root=Path.cwd())
    peak = matmul_rate()
    achieved, fit_seconds, epochs = training_throughput(settings)

    reference = statistics.median(seconds["bare"])
    labels = {
        "bare": "1 notebook recipe, plain Keras script (reference)",
        "seed": "2 travel-forecast train, seed preset",
        "default": "3 travel-forecast train, default",
        "no-data": "4 travel-forecast retrain, no new data",
        "predict": "5 travel-forecast predict --days 7",
        "seed, server": "2 seed preset, with a running Prefect server",
        "default, server": "3 default, with a running Prefect server",
        "no-data, server": "4 no new data, with a running Prefect server",
        "default baselines only, server": "3 default without the peers (baselines only), with a running Prefect server",
        "default, peers inline, server": "3 default, peers fitted after the networks (inline), with a running Prefect server",
    }
    if args.op_threads:
        labels |= {
            f"{name}, op threads": f"{labels[name]}, {args.op_threads} TensorFlow thread(s) per op"
            for name in OP_THREADS_MEASURED
        }
    lines = ["| measurement | median s | ratio to 1 | target |", "|---|---|---|---|"]
    rows = []
    for name, label in labels.items():
        if name not in seconds:
            continue
        median = statistics.median(seconds[name])
        ratio = median / reference
        target = f"≤ {TARGETS[name.split(',')[0]]:.2f}" if name.split(",")[0] in TARGETS else ""
        lines.append(f"| {label} | {median:.1f} | {ratio:.3f} | {target} |")
        rows.append(
            {"measurement": name, "median_seconds": median, "ratio": ratio, "runs": " ".join(f"{s:.1f}" for s in seconds[name])}
        )
    share = achieved / peak
    lines.append(
        f"| 6 default network training: {achieved / 1e9:.2f} GFLOP/s of {peak / 1e9:.1f} GFLOP/s matmul | {fit_seconds:.1f} ({epochs} epochs) | {share:.1%} of matmul | ≥ 30% |"
    )
    rows.append({"measurement": "flops", "median_seconds": fit_seconds, "ratio": share, "runs": f"{achieved:.3e} of {peak:.3e}"})
    table = "\n".join(lines)
    print(f"\nmedians of {args.repeat} runs, ratios to the reference measured in the same run:\n\n{table}")

    import pandas as pd

    out = args.out / f"speed-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "speed.csv", index=False)
    (out / "speed.md").write_text(
        f"# Speed\n\nMedians of {args.repeat} runs; ratios to measurement 1 in the same run.\n\n{table}\n"
    )
    print(f"written: {out}/speed.csv, speed.md")


def daily_speed(args: argparse.Namespace) -> None:
    """The daily retrain of one new day, its backtest reusing a registered fit and fitting afresh, beside the bare
    recipe, alternating; every retrain starts from the same stored state. One table.

    With `--series CONFIG` (a long-format file) every series gets its day: the retrain of all of them one after the
    other in one process, and on 2 Dask workers, as seconds per series over the recipe's."""
    import shutil

    import pandas as pd

    from tasks.config import load_settings
    from tasks.lstm import held_out_ends

    base = args.series or args.config
    settings = load_settings(base, [], {"data": {"path": str(args.data)}} if args.data else None, root=Path.cwd())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    rows = pd.read_csv(settings.data.path, dtype=str, encoding=settings.data.encoding, sep=settings.data.delimiter)
    column = settings.data.series_column
    series = {name: part for name, part in rows.groupby(column, sort=False)} if column else {None: rows}
    test_days = settings.backtest.test_days
    # The versions a month of daily retrains leaves that the timed one uses: fitted before its test days, on the
    # days before its held-out days (their peers stand in), and on the day before (its networks start from it).
    ends = {
        name: sorted({len(part) - test_days, *held_out_ends(settings.model, len(part)), len(part) - 1})
        for name, part in series.items()
    }
    if len({len(each) for each in ends.values()}) > 1:
        raise SystemExit("every series needs as many setup retrains: give them histories of one length")
    first_ends = next(iter(ends.values()))  # as many as every series'
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        work, kept = root / "workspace", root / "kept"
        work.mkdir()
        initial = pd.concat(part.iloc[: ends[name][0]] for name, part in series.items()).sort_index()
        initial.to_csv(root / "initial.csv", index=False)
        config = workspace_config(work, base, root / "initial.csv")
        server, api_url = start_prefect_server(root / "prefect-home", env)
        served = env | {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(root / "prefect-home-client")}  # not ~/.prefect
        cli = [str(BIN / "travel-forecast"), "retrain", "--config", str(config)]
        bare = [sys.executable, str(ROOT / "benchmarks" / "bare_seed.py")]
        bare += [*(["--data", str(args.data)] if args.data else []), *(["--config", str(args.config)] if args.config else [])]
        if column:  # all series in one process, and on two Dask workers
            commands = {"bare": bare, "warm": cli, "warm, 2 workers": [*cli, "--workers", "2"]}
        else:  # afresh: random weights, and (warm_start_days being part of the fit key) no version reused or lending peers
            commands = {
                "bare": bare,
                "warm": cli,
                "fresh": [*cli, "--set", "model.warm_start_days=0", "--set", "backtest.reuse_fit_days=0"],
            }
        # It measured what it says: v1's fit ended the day before the test days, so its peers stood in too.
        count = len(series)
        expect = {"warm": ["the backtest forecasts with v1, fitted through"] * count}
        expect["warm"] += [f"start from the weights of v{len(first_ends)}, fitted"] * count
        peers = {"auto_ets", "auto_theta", "auto_arima"} & {*settings.model.combine_with}
        if peers & {*settings.backtest.compare}:
            expect["warm"] += ["statistical peer fit(s) stand for the compared peers' fits"] * count
        if peers and len(first_ends) > 2:
            expect["warm"] += ["statistical peer fit(s) of the version fitted through"] * count
        try:
            print(f"  setting up: versions fitted on the first {', '.join(map(str, first_ends))} days", flush=True)
            # Quicker, and one version each (v1, v2, ...): the backtest and the gate are not part of a version's fit_key.
            setup = [*cli, "--set", "backtest.compare=[]", "--set", "retrain.allow_peer_champion=false"]
            setup += ["--workers", "2"] if column else []
            timed([*setup, "--init"], served)
            for step in range(len(first_ends) - 1):
                for name, part in series.items():
                    land(work, column, name, part.iloc[ends[name][step] : ends[name][step + 1]], f"days-{ends[name][step + 1]}")
                timed(setup, served)
            shutil.copytree(work, kept)
            for round_ in range(args.repeat):
                order = list(commands) if round_ % 2 == 0 else list(commands)[::-1]
                for name in order:
                    if name != "bare":  # the same stored state and one new day for every retrain
                        shutil.rmtree(work)
                        shutil.copytree(kept, work)
                        for each, part in series.items():
                            land(work, column, each, part.iloc[-1:], part[settings.data.date_column].iloc[-1])
                    seconds.setdefault(name, []).append(timed(commands[name], served, *expect.get(name, ())))
                    print(f"  round {round_ + 1} {name:16s} {seconds[name][-1]:7.1f} s", flush=True)
                    if column and name != "bare":  # a Dask worker's log is its own: the run's table says what it did
                        table = pd.read_csv(max((work / "out").glob("retrain-*/series.csv")))
                        if not (table["days_added"] == 1).all() or not table["status"].str.endswith("promoted").all():
                            raise RuntimeError(f"{name}: not every series retrained on its new day:\n{table}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    reference = statistics.median(seconds["bare"])
    labels = {
        "bare": "1 notebook recipe, plain Keras script (reference)",
        "warm": "daily retrain (default): the backtest forecasting with the version fitted before its test days, "
        "the networks starting from the newest version's weights, peer fits lent",
        "fresh": "daily retrain, everything fitted afresh (model.warm_start_days = 0, backtest.reuse_fit_days = 0)",
    }
    if column:
        labels |= {
            "warm": f"daily retrain (default) of {count} series, one after the other in one process",
            "warm, 2 workers": "the same on 2 Dask workers",
        }
    per = "seconds per series / 1" if column else "ratio to 1"
    lines = [f"| measurement | median s | {per} | target |", "|---|---|---|---|"]
    for name, label in labels.items():
        if name in seconds:
            median = statistics.median(seconds[name]) / (count if name != "bare" else 1)
            lines.append(
                f"| {label} | {statistics.median(seconds[name]):.1f} | {median / reference:.3f} | {'≤ 0.25' if name != 'bare' else ''} |"
            )
    if column:
        per_round = ", ".join(f"{x / count / y:.3f}" for x, y in zip(seconds["warm"], seconds["bare"], strict=True))
        table = "\n".join(lines) + f"\n\nwarm per series / recipe per round: {per_round}"
    else:
        per_round = ", ".join(f"{x / y:.2f}" for x, y in zip(seconds["warm"], seconds["fresh"], strict=True))
        table = "\n".join(lines) + f"\n\nwarm / fresh per round: {per_round}"
    table += "\n\nruns (s): " + "; ".join(f"{n} {', '.join(f'{s:.1f}' for s in seconds[n])}" for n in seconds)
    print(f"\nmedians of {args.repeat} runs, with a running Prefect server, measured side by side:\n\n{table}")
    prefix = "speed-series-daily" if column else "speed-daily"
    write_runs(args.out / prefix, seconds, f"# Speed of the daily retrain\n\nMedians of {args.repeat} runs.\n\n{table}\n")


def land(work: Path, column: str | None, series: str | None, days, label: str) -> None:
    """`days` as a daily file in the landing folder: `<label>.csv`, or a series' `<series>__<label>.csv` in its own."""
    if column is None:
        (work / "incoming").mkdir(exist_ok=True)
        days.to_csv(work / "incoming" / f"{label}.csv", index=False)
        return
    folder = work / "incoming" / series
    folder.mkdir(parents=True, exist_ok=True)
    days.drop(columns=column).to_csv(folder / f"{series}__{label}.csv", index=False)


# A travel-forecast process holding a retrain's libraries runs `validate` on the sample, then ends as `argv[1]` says;
# it prints when main returned.
EXIT_PROGRAM = """
import sys, time
import keras, mlflow, prefect, statsforecast, tensorflow as tf
keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])(tf.ones((3, 3)))
import flows.cli
main = flows.cli.main
def timed_main(argv=None):
    code = main(argv)
    print(f"RETURNED {time.time():.4f}", flush=True)
    return code
flows.cli.main = timed_main
how, sys.argv = sys.argv[1], ["travel-forecast", "validate", sys.argv[2]]
if how == "without teardown":
    flows.cli.command()
else:
    sys.exit(flows.cli.main())
"""


def exit_speed(args: argparse.Namespace) -> None:
    """Seconds from main's return to the process's end, both ways, alternating; one table."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    sample = ROOT / "data" / "sample" / "nyc_subway_covid.csv"
    seconds: dict[str, list[float]] = {"without teardown": [], "with teardown": []}
    for round_ in range(args.repeat):
        for how in list(seconds)[:: 1 if round_ % 2 == 0 else -1]:
            result = subprocess.run(
                [sys.executable, "-c", EXIT_PROGRAM, how, str(sample)], cwd=ROOT, env=env, capture_output=True, text=True
            )
            ended = time.time()
            returned = [line for line in result.stdout.splitlines() if line.startswith("RETURNED ")]
            if result.returncode != 0 or not returned:
                raise RuntimeError(f"{how} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
            seconds[how].append(ended - float(returned[0].split()[1]))
            print(f"  round {round_ + 1} {how:16s} {seconds[how][-1]:6.2f} s after main returned", flush=True)
    lines = ["| the end of a command holding a retrain's libraries | median s after main returned | per round |", "|---|---|---|"]
    lines += [f"| {how} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |" for how, v in seconds.items()]
    table = "\n".join(lines)
    print(f"\nmedians of {args.repeat} rounds, measured side by side:\n\n{table}")
    write_runs(args.out / "speed-exit", seconds, f"# The end of a command\n\nMedians of {args.repeat} rounds.\n\n{table}\n")


def series_speed(args: argparse.Namespace) -> None:
    """Every series trained with 1 and 2 Dask workers, beside the bare recipe, alternating; one table."""

    from tasks.config import load_settings
    from tasks.series_tasks import series_names

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    env |= {"TF_CPP_MIN_LOG_LEVEL": "3", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    count = len(series_names.fn(load_settings(args.series, [])))  # relative paths under the project, as the command reads them
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = workspace_config(root, args.series, None)
        env |= {"PREFECT_HOME": str(root / "prefect-home")}
        train = [str(BIN / "travel-forecast"), "train", "--config", str(config)]
        commands = {
            "bare": [sys.executable, str(ROOT / "benchmarks" / "bare_seed.py")],
            "1 worker": [*train, "--workers", "1"],
            "2 workers": [*train, "--workers", "2"],
        }
        rounds(commands, dict.fromkeys(commands, env), args.repeat, seconds)
    reference = statistics.median(seconds["bare"])
    lines = ["| measurement | median s | series per minute | seconds per series / 1 |", "|---|---|---|---|"]
    lines.append(f"| 1 notebook recipe, plain Keras script (reference) | {reference:.1f} | | 1.000 |")
    for name in ("1 worker", "2 workers"):
        median = statistics.median(seconds[name])
        lines.append(
            f"| train {count} series, {name} | {median:.1f} | {count * 60 / median:.2f} | {median / count / reference:.3f} |"
        )
    table = "\n".join(lines)
    print(f"\nmedians of {args.repeat} runs, measured side by side:\n\n{table}")
    write_runs(args.out / "speed-series", seconds, f"# Speed over series\n\nMedians of {args.repeat} runs.\n\n{table}\n")


def write_runs(prefix: Path, seconds: dict[str, list[float]], markdown: str) -> None:
    """Every run's seconds per measurement (speed.csv) and the table (speed.md), in `<prefix>-<UTC time>/`."""
    import pandas as pd

    out = prefix.with_name(f"{prefix.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"measurement": k, "runs": " ".join(f"{s:.1f}" for s in v)} for k, v in seconds.items()]).to_csv(
        out / "speed.csv", index=False
    )
    (out / "speed.md").write_text(markdown)
    print(f"written: {out}/speed.csv, speed.md")


def fit_side_by_side(config, train, validation, start=None) -> list[int]:
    """The ensemble's networks trained side by side (tried here, not in the product): each batch is one compiled
    step of every network, each given a batch of its own order and its own optimizer; each stops early on its own
    validation loss (Keras's rule: one compiled call scores them all each epoch) with its best weights. A network
    that stopped stays in the step until the last one stops (one trace per fit), its later weights unused.
    `start`: an earlier fit whose weights the networks start from (with the warm-start patience). Returns each
    network's epochs."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tasks.network import build_model, member_of

    single = config.model_copy(update={"ensemble": 1})
    members = []
    for index in range(config.ensemble):
        keras.utils.set_random_seed(config.random_seed * 1000 + index)
        members.append(build_model(single, train.X.shape[1], train.X.shape[2], train.future.shape[1], name=f"m{index}"))
        if start is not None:
            members[-1].set_weights(member_of(start, index, config.ensemble).get_weights())
    optimizers = [keras.optimizers.Adam(learning_rate=config.learning_rate) for _ in members]
    for member, optimizer in zip(members, optimizers, strict=True):
        optimizer.build(member.trainable_variables)
    loss = keras.losses.get(config.loss)

    @tf.function(reduce_retracing=True)  # one trace for every batch size (the last batch is smaller)
    def step(inputs, y):
        with tf.GradientTape(persistent=True) as tape:
            losses = [tf.reduce_mean(loss(y[i], member(inputs[i], training=True))) for i, member in enumerate(members)]
        for member, optimizer, member_loss in zip(members, optimizers, losses, strict=True):
            optimizer.apply(tape.gradient(member_loss, member.trainable_variables), member.trainable_variables)
        return tf.stack(losses)

    @tf.function
    def validation_losses(inputs, y):
        return tf.stack([tf.reduce_mean(loss(y, member(inputs, training=False))) for member in members])

    inputs, targets = [np.asarray(values, "float32") for values in train.inputs], np.asarray(train.y, "float32")
    held = [np.asarray(values, "float32") for values in validation.inputs], np.asarray(validation.y, "float32")
    orders = [np.random.default_rng(config.random_seed * 1000 + index) for index in range(len(members))]
    best, best_weights, waited = [np.inf] * len(members), [None] * len(members), [0] * len(members)
    patience = config.warm_start_patience if start is not None else config.early_stopping_patience
    epochs, batch = [0] * len(members), config.batch_size or len(train)
    running = set(range(len(members)))
    for epoch in range(config.epochs):
        rows = [order.permutation(len(train)) for order in orders]
        for first in range(0, len(train), batch):
            chosen = [order[first : first + batch] for order in rows]
            step([[values[c] for values in inputs] for c in chosen], [targets[c] for c in chosen])
        scores = validation_losses(*held).numpy()
        for i in sorted(running):
            epochs[i], waited[i] = epoch + 1, waited[i] + 1
            if scores[i] < best[i]:
                best[i], best_weights[i], waited[i] = scores[i], members[i].get_weights(), 0
        running = {i for i in running if not patience or waited[i] < patience}
        if not running:
            break
    if patience:  # as Keras's EarlyStopping(restore_best_weights=True); without it, the last weights
        for member, weights in zip(members, best_weights, strict=True):
            member.set_weights(weights)
    return epochs


_SAMPLES: dict = {}


def _load_samples(config: Path | None, data: Path | None, warm: bool = False) -> None:
    """Process initializer: the default model and its samples on the history before the backtest's test days;
    `warm`: and one fit of its networks on them, which the timed fits start from."""
    from tasks.config import load_settings
    from tasks.input_file import read_history_file
    from tasks.lstm import LstmForecaster

    settings = load_settings(config, [], {"data": {"path": str(data)}} if data else None, root=Path.cwd())
    history = read_history_file(settings.data.path, settings.data).iloc[: -settings.backtest.test_days]
    train, validation = LstmForecaster(settings.data, settings.model).fit_encoding(history)
    _SAMPLES.update(model=settings.model, train=train, validation=validation)
    if warm:
        from tasks.network import fit_network

        _SAMPLES["start"] = fit_network(settings.model, train, validation)[0]


def _ready(_) -> bool:
    return bool(_SAMPLES)


def _fit(procedure: str, seed: int) -> list[int]:
    """One fit of the ensemble by `procedure`; each network's epochs."""
    config = _SAMPLES["model"].model_copy(update={"random_seed": seed})
    train, validation = _SAMPLES["train"], _SAMPLES["validation"]
    start = _SAMPLES.get("start")
    if procedure == "side by side":
        return fit_side_by_side(config, train, validation, start)
    from tasks.network import fit_network

    epochs: dict[int, int] = {}
    fit_network(config, train, validation, lambda epoch, logs: epochs.__setitem__(logs.get("member", 1), epoch), start)
    return [epochs[index] for index in sorted(epochs)]


def members_speed(args: argparse.Namespace) -> None:
    """The ensemble fitted apart and side by side, `--jobs` fits at once, seeds 42, 43, ... (one per round and job),
    alternating the order; one table of median wall times and the ratio of side by side to apart."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    seconds: dict[str, list[float]] = {"apart": [], "side by side": []}
    epochs: dict[str, list] = {"apart": [], "side by side": []}
    context = multiprocessing.get_context("spawn")
    initargs = (args.config, args.data, args.warm)
    with ProcessPoolExecutor(args.jobs, context, initializer=_load_samples, initargs=initargs) as pool:
        assert all(pool.map(_ready, range(args.jobs)))  # the workers have started and loaded their samples
        for round_ in range(args.repeat):
            for name in ["apart", "side by side"][:: 1 if round_ % 2 == 0 else -1]:
                seeds = [42 + round_ * args.jobs + job for job in range(args.jobs)]
                start = time.perf_counter()
                run = list(pool.map(_fit, [name] * args.jobs, seeds))
                seconds[name].append(time.perf_counter() - start)
                epochs[name].append(run)
                print(f"  round {round_ + 1} {name:13s} {seconds[name][-1]:6.1f} s, epochs per network {run}", flush=True)
    apart = statistics.median(seconds["apart"])
    ratios = [together / alone for together, alone in zip(seconds["side by side"], seconds["apart"], strict=True)]
    lines = [f"| the ensemble's fit, {args.jobs} at once | median s | ratio to apart |", "|---|---|---|"]
    lines += [f"| {name} | {statistics.median(v):.1f} | {statistics.median(v) / apart:.3f} |" for name, v in seconds.items()]
    table = "\n".join(lines)
    summary = f"per round, side by side / apart: {', '.join(f'{r:.3f}' for r in ratios)}; epochs per network: {epochs}"
    print(f"\nmedians of {args.repeat} rounds, measured side by side:\n\n{table}\n{summary}")
    fit = "warm-started fit (as a daily retrain's)" if args.warm else "fit"
    heading = f"# The ensemble's {fit}, apart and side by side\n\n{table}\n\n{summary}\n"
    write_runs(args.out / f"speed-members{'-warm' if args.warm else ''}", seconds, heading)


if __name__ == "__main__":
    main()
