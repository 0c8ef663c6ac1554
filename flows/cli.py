"""The `travel-forecast` command. Heavy libraries load inside the commands so --help is instant."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def _at_least_one(what: str):
    """An argparse type: a whole number of `what` of at least 1."""

    def parse(text: str) -> int:
        number = int(text) if text.strip().lstrip("+").isdigit() else 0
        if number < 1:
            raise argparse.ArgumentTypeError(f"expects a whole number of {what} of at least 1, got {text!r}")
        return number

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="travel-forecast",
        description="Forecast daily travellers from past travel, COVID-19 cases and day type.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set model.epochs=20 --set preset=seed (repeatable)",
    )
    scale_out = argparse.ArgumentParser(add_help=False)
    scale_out.add_argument(
        "--workers", type=_at_least_one("workers"), help="the series of a long-format file on N local Dask worker processes"
    )
    scale_out.add_argument("--dask-address", help="... or on a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    train = commands.add_parser("train", parents=[common, scale_out], help="validate, backtest, train and register a model")
    train.add_argument("--data", type=Path, help="input CSV (default: data.path from the config)")
    backtest = commands.add_parser(
        "backtest",
        parents=[common],
        help="rolling-origin backtest of the configured model and the baselines (nothing registered)",
    )
    backtest.add_argument("--data", type=Path, help="input CSV (default: data.path from the config)")
    validate = commands.add_parser("validate", parents=[common], help="check an input CSV and print every failure")
    validate.add_argument("file", type=Path, help="input CSV to check")
    retrain = commands.add_parser("retrain", parents=[common, scale_out], help="ingest the landing folder and retrain once, now")
    retrain.add_argument("--force", action="store_true", help="retrain even if no new data arrived")
    retrain.add_argument("--init", action="store_true", help="start an empty history store from data.path (first run)")
    retrain.add_argument("--epochs", type=int, help="override model.epochs for this run (checked as the setting is)")
    commands.add_parser("serve", parents=[common], help="serve the retrain deployment (daily schedule + data trigger)")
    deploy = commands.add_parser(
        "deploy", parents=[common], help="create the retrain deployment on a process work pool, for `prefect worker start`"
    )
    deploy.add_argument(
        "--pool", default="travel-forecast", help="process work pool (created if missing; default travel-forecast)"
    )
    serve_model = commands.add_parser(
        "serve-model", parents=[common], help="serve the champion (or --version N) over HTTP: POST /invocations"
    )
    serve_model.add_argument("--port", type=int, default=5001, help="port on 127.0.0.1 (default 5001)")
    serve_model.add_argument("--version", help="a registered version instead of the champion")
    ingest = commands.add_parser(
        "ingest",
        parents=[common],
        help="drop a daily file into the landing folder and announce it; the retrain it starts ingests it",
    )
    ingest.add_argument("file", type=Path, help="CSV with one or more new days, in the input format")
    predict = commands.add_parser("predict", parents=[common], help="forecast the next days with the champion")
    predict.add_argument("--days", type=_at_least_one("days"), default=1, help="how many days ahead (default 1)")
    report = commands.add_parser(
        "report", parents=[common], help="one page (PNG): recent travellers and forecasts, live error, decisions"
    )
    report.add_argument("--weeks", type=_at_least_one("weeks"), default=8, help="weeks shown (default 8)")
    return parser


def _settings(args: argparse.Namespace):
    """The run's settings, checked before anything starts; paths typed on the command line are under the working directory."""
    from tasks.config import load_settings

    data = getattr(args, "data", None) or (args.file if args.command == "validate" else None)
    updates: dict = {"data": {"path": str(data.absolute())}} if data else {}
    if os.environ.get("MLFLOW_TRACKING_URI"):  # the standard MLflow variable points at a server
        updates["mlflow"] = {"tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}
    if getattr(args, "epochs", None) is not None:
        updates["model"] = {"epochs": args.epochs}
    if getattr(args, "workers", None) or getattr(args, "dask_address", None):
        updates["scale"] = {"workers": args.workers or 0, "dask_address": args.dask_address}
    settings = load_settings(args.config.absolute() if args.config else None, args.overrides, updates=updates)
    if settings.data.series_column is None and SERIES_COLUMN in _header(settings.data):  # long format, as the file says
        settings = settings.updated({"data": {"series_column": SERIES_COLUMN}})
    if settings.data.series_column and settings.data.series:  # one series of a long file: its own model and store
        return settings.for_series(settings.data.series)
    return settings


SERIES_COLUMN = "series"  # a file with this column is long format unless the config names another (data.series_column)


def _header(data) -> list[str]:
    """The input file's column names (none when it cannot be read: reading it later says why)."""
    try:
        with data.path.open(encoding=data.encoding, errors="replace") as file:
            return [name.strip() for name in file.readline().rstrip("\r\n").split(data.delimiter)]
    except OSError:
        return []


def _preflight(command: str, settings) -> None:
    """Fail before Prefect starts on what a run would only find out seconds later."""
    from tasks.errors import ConfigError, InputUnreadable

    if command in ("train", "backtest") and not settings.data.path.is_file():
        raise InputUnreadable(f"{settings.data.path}: no such input file (--data, or data.path in the config)")
    missing = [path for path in settings.data.pretrain_paths if not path.is_file()]
    if command in ("train", "backtest", "retrain", "serve") and missing:
        raise InputUnreadable(f"{missing[0]}: no such file (data.pretrain_paths: other series to pretrain the networks on)")
    if command == "backtest" and settings.many_series:
        raise ConfigError(
            f"{command} reads one series; {settings.data.path.name} has many (data.series_column): "
            "name one with --set data.series=<name>"
        )


def _validate(args: argparse.Namespace, settings) -> int:
    from datetime import UTC, datetime

    from tasks.input_file import SUMMARY_LIMIT, InputValidationError, read_every_series, write_report

    path = settings.data.path
    try:
        histories = read_every_series(path, settings.data)
    except InputValidationError as error:
        if len(error.report) > SUMMARY_LIMIT:  # the screen gets the summary, the file every row
            folder = settings.output_dir / f"validate-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
            raise InputValidationError(error.path, error.report, write_report(error.report, folder)[0]) from None
        raise
    for series, history in histories.items():
        first, last = history["date"].min().date(), history["date"].max().date()
        print(f"{path}: {f'series {series}: ' if series else ''}valid, {len(history)} days from {first} to {last}")
    return 0


NOTHING_DONE = {"train": "; nothing was trained or registered", "backtest": "; nothing was backtested"}


def _print_invalid(command: str, error) -> None:
    """A file's validation failures: the count, the table or its summary per rule and column, where every row is."""
    from tasks.input_file import summarize_report

    print(f"\n{error.path}: {len(error.report)} validation failure(s){NOTHING_DONE.get(command, '')}", file=sys.stderr)
    print(summarize_report(error.report), file=sys.stderr)
    if error.report_file:
        print(f"every failure: {error.report_file}", file=sys.stderr)


def _print_backtest(evaluation) -> None:
    from tasks.evaluation import format_metrics, metrics_table

    print(f"\nBacktest {evaluation.first_day} .. {evaluation.last_day}, one step ahead, real units:")
    print(format_metrics(metrics_table(evaluation.metrics)))
    print(
        f"Prediction intervals of {evaluation.kind}: "
        + ", ".join(f"{lv}% covered {v:.0%} of the days" for lv, v in evaluation.coverage.items())
    )
    print(f"{evaluation.kind}: MAE {evaluation.comparison()} (below 1: it wins)")


def _train(args: argparse.Namespace, settings) -> int:
    from flows.train import train, train_each_series
    from tasks.series_tasks import format_series_table

    if settings.many_series:
        table = train_each_series(settings)
        print(f"\n{len(table)} series of {settings.data.path.name}, each registered as its own model:")
        print(format_series_table(table))
        return 0
    summary = train(settings)
    _print_backtest(summary.evaluation)
    print(
        f"\nRegistered model '{summary.model_name}' version {summary.model_version}, {summary.kind} (MLflow run {summary.run_id})"
    )
    print(f"Plots and reports: {summary.run_dir}")
    return 0


def _backtest(args: argparse.Namespace, settings) -> int:
    from flows.backtest import backtest

    _print_backtest(backtest(settings))
    return 0


def _retrain(args: argparse.Namespace, settings) -> int:
    from flows.retrain import retrain, retrain_each_series
    from tasks.series_tasks import format_series_table

    if settings.many_series:
        table = retrain_each_series(settings, force=args.force, init=args.init)
        print(f"\n{len(table)} series of {settings.data.path.name}:")
        print(format_series_table(table))
        return 0

    summary = retrain(settings, force=args.force, trigger="manual", init=args.init)  # --epochs is in the settings, checked
    earlier = f", {summary.earlier_changes} stored by an earlier unfinished run" if summary.earlier_changes > 0 else ""
    print(
        f"{summary.status}: {summary.days_added} new day(s), {summary.days_revised} revised{earlier}"
        + (f"; model version {summary.model_version}: {summary.reason}" if summary.model_version else "")
    )
    for line in summary.held_back:
        print(f"  held back: {line}")
    return 0


def _serve(args: argparse.Namespace, settings) -> int:
    from flows.serve import serve_retrain

    serve_retrain(settings)
    return 0


def _deploy(args: argparse.Namespace, settings) -> int:
    from flows.serve import deploy_retrain

    if not os.environ.get("PREFECT_API_URL"):
        print("deploy stopped: PREFECT_API_URL is not set; a work pool lives on a Prefect server", file=sys.stderr)
        return 1
    deploy_retrain(settings, args.pool)
    name = f"{'retrain-series' if settings.many_series else 'retrain'}/{settings.retrain.deployment}"
    print(f"deployed {name} on the work pool {args.pool}: start workers with `prefect worker start --pool {args.pool}`")
    print(f"first run: prefect deployment run {name} --param init=true")
    return 0


def _serve_model(args: argparse.Namespace, settings) -> int:
    """Replace this process by MLflow's scoring server on the champion, with this environment's tools on PATH."""
    from tasks.errors import RunStopped
    from tasks.registry import CHAMPION, Registry

    registry, name = Registry(settings.mlflow), settings.mlflow.registered_model
    if args.version is None and registry.champion() is None:
        raise RunStopped(f"no '{CHAMPION}' alias on model '{name}': run `travel-forecast retrain --init` first")
    model = f"models:/{name}/{args.version}" if args.version else f"models:/{name}@{CHAMPION}"
    tools = Path(sys.executable).parent  # `mlflow models serve` runs uvicorn from PATH: this venv's
    env = os.environ | {"PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": registry.uri}
    serve = ["models", "serve", "-m", model, "--env-manager", "local", "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"serving {model} on http://127.0.0.1:{args.port}/invocations (Ctrl-C stops it)", flush=True)
    os.execve(tools / "mlflow", [str(tools / "mlflow"), *serve], env)
    return 0  # not reached: the process is MLflow's server now


def _ingest(args: argparse.Namespace, settings) -> int:
    from flows.retrain import EVENT_DATA_ARRIVED
    from flows.serve import announce_arrival
    from tasks.landing import WaitingFileExists, drop_into_landing, series_of_file
    from tasks.prefect_api import prefect_api_problem

    try:
        series = series_of_file(args.file.name, settings) if settings.many_series else None
        landing = (settings.for_series(series) if series else settings).retrain.incoming_dir
        target = drop_into_landing(args.file, landing)
    except (ValueError, WaitingFileExists) as error:
        print(f"ingest stopped: {error}", file=sys.stderr)
        return 1
    print(f"{target}: in the landing folder" + (f" of series {series}" if series else ""))
    if not os.environ.get("PREFECT_API_URL"):
        print("PREFECT_API_URL is not set: no server to announce it to; the next scheduled or manual retrain picks it up")
        return 0
    problem = prefect_api_problem(os.environ["PREFECT_API_URL"])
    if problem:
        print(f"not announced: {problem}; the file waits for the next scheduled or manual retrain", file=sys.stderr)
        return 0
    announce_arrival(args.file.name, str(target), series)
    print(f"announced as {EVENT_DATA_ARRIVED}: the served deployment starts a retrain run" + (f" of {series}" if series else ""))
    return 0


def _predict(args: argparse.Namespace, settings) -> int:
    import pandas as pd

    from flows.predict import predict

    try:
        path = predict(settings, days=args.days)
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    forecast = pd.read_csv(path)
    digits = "{:,.0f}" if settings.data.target_unit == 1 else "{:,.2f}"  # whole travellers, or the file's unit
    numbers = {c: digits.format for c in forecast.columns if c == "forecast" or c.startswith(("lower_", "upper_"))}
    print(forecast.to_string(index=False, formatters=numbers))
    print(f"\nwritten to {path}")
    return 0


def _report(args: argparse.Namespace, settings) -> int:
    from datetime import date

    from tasks.live_tasks import live_report
    from tasks.series_tasks import series_names

    settings.output_dir.mkdir(parents=True, exist_ok=True)
    names = series_names(settings) if settings.many_series else [""]
    for name in names:
        path = settings.output_dir / f"report-{name + '-' if name else ''}{date.today():%Y-%m-%d}.png"
        print(f"written to {live_report(settings.for_series(name) if name else settings, path, args.weeks)}")
    return 0


def _lost_prefect(error: Exception) -> str | None:
    """Why the run stopped, when it is the Prefect API it reports to that went away mid-run (else None)."""
    import httpx

    from tasks.prefect_api import prefect_api_problem

    url = os.environ.get("PREFECT_API_URL")
    if not url or not isinstance(error, httpx.TransportError):
        return None
    problem = prefect_api_problem(url)
    return f"{problem} any more ({type(error).__name__} mid-run)" if problem else None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the run unwinds as from Ctrl-C: MLflow runs end KILLED, child servers stop."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated("stopped by SIGTERM")


def _resend_dropped_stop(unraisable) -> None:
    """Send a stop signal again when Python dropped its exception, so the run still stops.

    A signal's handler runs wherever the main thread is; inside a garbage-collection callback
    (a weakref finalizer of SQLAlchemy, pandera, ...) the exception it raises is printed as
    "Exception ignored" and the run would go on to finish. Sent again from a timer thread,
    the handler runs outside the callback. Other unraisable exceptions are printed as usual.
    """
    from prefect.exceptions import TerminationSignal

    error = unraisable.exc_value
    if isinstance(error, TerminationSignal):
        signum = error.signal
    elif isinstance(error, KeyboardInterrupt):
        signum = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
    else:
        sys.__unraisablehook__(unraisable)
        return
    threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the log
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's "Created version ..." lines: ours say it once
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    handlers = {
        "train": _train,
        "backtest": _backtest,
        "validate": _validate,
        "retrain": _retrain,
        "serve": _serve,
        "deploy": _deploy,
        "serve-model": _serve_model,
        "ingest": _ingest,
        "predict": _predict,
        "report": _report,
    }
    from flows.runtime import FLOW_IMPORTS, one_off_flow_runtime, quiet_command_line_logs
    from tasks.errors import ConfigError, RunStopped
    from tasks.input_file import InputValidationError

    quiet_command_line_logs()
    signal.signal(signal.SIGTERM, _raise_terminated)  # the default would end the process with nothing cleaned up
    sys.unraisablehook = _resend_dropped_stop
    try:
        settings = _settings(args)  # a bad setting is reported before Prefect starts
        _preflight(args.command, settings)
        if (getattr(args, "workers", None) or getattr(args, "dask_address", None)) and not settings.many_series:
            raise ConfigError("--workers and --dask-address fan out over the series of a long-format file (data.series_column)")
        if args.command not in FLOW_IMPORTS:
            return handlers[args.command](args, settings)
        with one_off_flow_runtime(args.command):
            return handlers[args.command](args, settings)
    except InputValidationError as error:
        _print_invalid(args.command, error)
        return 1
    except RunStopped as error:
        print(f"\n{args.command} stopped: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # only the Prefect API gone mid-run is known here; anything else keeps its traceback
        lost = _lost_prefect(error)
        if lost is None:
            raise
        print(f"\n{args.command} stopped: {lost}; the stored days are trained on by the next run", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        how = "SIGTERM" if isinstance(error, Terminated) else "Ctrl-C"
        print(
            f"\n{args.command} stopped: {how}; its MLflow runs are marked KILLED, stored data is as of the last whole step",
            file=sys.stderr,
        )
        return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)


def command() -> None:
    """The `travel-forecast` program: `main`, then the end of the process without the interpreter's teardown.

    Once main returned and every exit handler ran (logging, Prefect and MLflow flushed, helper processes ended),
    nothing is left to write, but tearing TensorFlow, MLflow and Prefect down took the process another 2.6 s (median;
    `benchmarks/speed.py --exit`). The handler is registered first, so it runs last; if main raises, the teardown is
    the normal one.
    """
    import atexit

    returned: list[int] = []

    def end_now() -> None:
        if returned:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(returned[0])

    atexit.register(end_now)
    returned.append(main() or 0)
    sys.exit(returned[0])


if __name__ == "__main__":
    command()
