"""The `travel-forecast` command. Heavy libraries load inside the commands so --help is instant."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="travel-forecast",
        description="Forecast daily travellers from past travel, COVID-19 cases and day type.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    common.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set model.epochs=20 --set preset=seed (repeatable)",
    )
    train = commands.add_parser("train", parents=[common], help="validate, train, evaluate and register a model")
    train.add_argument("--data", type=Path, help="input CSV (default: data.path from the config)")
    validate = commands.add_parser("validate", parents=[common], help="check an input CSV and print every failure")
    validate.add_argument("file", type=Path, help="input CSV to check")
    return parser


def _settings(args: argparse.Namespace, data: Path | None):
    from tasks.config import load_settings

    updates: dict = {"data": {"path": str(data)}} if data else {}
    if os.environ.get("MLFLOW_TRACKING_URI"):  # the standard MLflow variable points at a server
        updates["mlflow"] = {"tracking_uri": os.environ["MLFLOW_TRACKING_URI"]}
    return load_settings(args.config, args.overrides, updates=updates)


def _validate(args: argparse.Namespace) -> int:
    from tasks.ingest import InputValidationError, format_report, ingest_file

    settings = _settings(args, args.file)
    try:
        history = ingest_file(settings.data.path, settings.data)
    except InputValidationError as error:
        print(f"{error.path}: {len(error.report)} validation failure(s)", file=sys.stderr)
        print(format_report(error.report), file=sys.stderr)
        return 1
    first, last = history["date"].min().date(), history["date"].max().date()
    print(f"{settings.data.path}: valid, {len(history)} days from {first} to {last}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from flows.train import train
    from tasks.evaluation import format_metrics, metrics_table
    from tasks.ingest import InputValidationError, format_report

    settings = _settings(args, args.data)
    try:
        summary = train(settings)
    except InputValidationError as error:
        print(f"\n{error.path}: {len(error.report)} validation failure(s); nothing was trained or registered", file=sys.stderr)
        print(format_report(error.report), file=sys.stderr)
        return 1
    print(f"\nTest window ({settings.model.test_days} days), real units:")
    print(format_metrics(metrics_table(summary.metrics)))
    print(f"\nRegistered model '{summary.model_name}' version {summary.model_version} (MLflow run {summary.run_id})")
    print(f"Plots and reports: {summary.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the log
    handlers = {"train": _train, "validate": _validate}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
