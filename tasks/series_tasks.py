"""Prefect tasks of runs over the many series of a long-format file: validate, group in MLflow, report one table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from tasks import input_file
from tasks.config import DataConfig, Settings
from tasks.errors import RunStopped
from tasks.train_tasks import TrainSummary


class SeriesFailed(RunStopped):
    """Some series of a run failed (the others finished); the message holds the run's table."""


@dataclass(frozen=True)
class SeriesOutcome:
    """How one series' part of a run ended: its training, or why it failed."""

    series: str
    summary: object | None  # a TrainSummary, or a retrain's RetrainSummary (flows/retrain.py)
    error: str | None = None

    @classmethod
    def of(cls, series: str, run: PrefectFuture) -> SeriesOutcome:
        """A series' task run once it ended: its summary, or its error (kept, not raised)."""
        run.wait()
        result = run.state.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            return cls(series, None, f"{type(result).__name__}: {result}")
        return cls(series, result)


@task(cache_policy=NO_CACHE)
def validate_series_input(raw: pd.DataFrame, config: DataConfig, run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every series of a long-format file validated at once (the report beside the run); any failure stops the run."""
    logger = get_run_logger()
    try:
        histories = input_file.series_histories(raw, config, config.path)
    except input_file.InputValidationError as error:
        path = input_file.write_report(error.report, run_dir)[0]
        logger.error("%s failed validation (%d failures); report: %s", config.path, len(error.report), path)
        raise input_file.InputValidationError(error.path, error.report, path) from None
    input_file.write_report(pd.DataFrame(columns=input_file.REPORT_COLUMNS), run_dir)
    spans = ", ".join(f"{name} {len(h)} days" for name, h in histories.items())
    logger.info("validated %d series of %s: %s", len(histories), config.path.name, spans)
    return histories


@task(cache_policy=NO_CACHE)
def series_names(settings: Settings) -> list[str]:
    """The series of the configured long-format file (data.path), in order of first appearance."""
    raw = input_file.read_csv(settings.data.path, settings.data)
    groups, report = input_file.split_series(raw, settings.data, settings.data.path)
    if len(report):
        raise input_file.InputValidationError(settings.data.path, report)
    return list(groups)


def last_day(histories: dict[str, pd.DataFrame]) -> str:
    """The latest day of any series."""
    return max(h["date"].max() for h in histories.values()).strftime("%Y-%m-%d")


@task(cache_policy=NO_CACHE)
def start_series_tracking(settings: Settings, names: list[str], day: str, run_dir: Path, kind: str) -> str:
    """The parent MLflow run of a `kind` run over many series (`day`: the data's last, or the run's); each
    series' run is its child."""
    from tasks.registry import Registry, flatten

    registry = Registry(settings.mlflow)
    tags = {"preset": settings.preset, "series": ",".join(names), "data_through": day, "kind": kind}
    params = flatten(settings.model_dump(mode="json", exclude={"series"})) | {"series_count": str(len(names))}
    run_id = registry.start_run(f"{kind}-{day}-{len(names)}-series", tags, params, sorted(run_dir.glob("*.csv")))
    get_run_logger().info("MLflow run %s in %s: one child run per series", run_id, registry.uri)
    return run_id


def series_table(outcomes: list[SeriesOutcome]) -> pd.DataFrame:
    """One row per series: what it registered and how its backtest compared (a retrain: what arrived and the
    champion decision), or why it failed. Columns no series has a value for are left out."""
    rows = []
    for outcome in outcomes:
        summary = outcome.summary
        if summary is None:
            rows.append({"series": outcome.series, "status": "failed", "error": outcome.error})
        elif isinstance(summary, TrainSummary):
            ratios = summary.evaluation.ratios()
            rows.append(
                {
                    "series": outcome.series,
                    "status": "registered",
                    "model": f"{summary.model_name} v{summary.model_version}",
                    "forecaster": summary.kind,
                    "mae": summary.evaluation.model["mae"],
                    "vs_best_peer": ratios.get("mae_ratio_to_best_peer"),
                    "vs_seasonal_naive": ratios.get("mae_ratio_to_seasonal_naive"),
                }
            )
        else:  # a RetrainSummary (flows/retrain.py)
            version = f"v{summary.model_version}" if summary.model_version else None
            rows.append(
                {
                    "series": outcome.series,
                    "status": summary.status,
                    "days_added": summary.days_added,
                    "days_revised": summary.days_revised,
                    "model": version,
                    "decision": summary.reason,
                }
            )
    columns = ["series", "status", "days_added", "days_revised", "model", "forecaster", "mae", "vs_best_peer"]
    columns += ["vs_seasonal_naive", "decision", "error"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    return table[[c for c in columns if table[c].notna().any()]]


def format_series_table(table: pd.DataFrame) -> str:
    """The table as text: MAE in whole travellers, ratios with three decimals, empty cells blank."""
    formats = {"mae": "{:,.0f}", "vs_best_peer": "{:.3f}", "vs_seasonal_naive": "{:.3f}", "days_added": "{:.0f}"}
    formats["days_revised"] = "{:.0f}"
    shown = table.copy().astype(object)
    for column, pattern in formats.items():
        if column in table:
            shown[column] = [pattern.format(v) if pd.notna(v) else "" for v in table[column]]
    return shown.fillna("").to_string(index=False)


@task(cache_policy=NO_CACHE)
def finish_series_tracking(settings: Settings, outcomes: list[SeriesOutcome], parent_run_id: str, run_dir: Path) -> pd.DataFrame:
    """The run's table: logged, beside the run, on the parent MLflow run and as a Prefect artifact; the parent run
    ends FAILED (naming the series) when any failed. Raises SeriesFailed then, after everything is recorded."""
    from prefect.artifacts import create_table_artifact

    from tasks.registry import Registry

    table = series_table(outcomes)
    path = run_dir / "series.csv"
    table.to_csv(path, index=False)
    registry, failed = Registry(settings.mlflow), [o.series for o in outcomes if o.summary is None]
    registry.log_files(parent_run_id, [path])
    text = format_series_table(table)
    statuses = ", ".join(f"{series} {status}" for series, status in zip(table["series"], table["status"], strict=True))
    get_run_logger().info("%d series: %s; the table: %s", len(outcomes), statuses, path)
    create_table_artifact(
        key="series",
        table=table.astype(object).where(table.notna(), None).to_dict("records"),
        description=f"{len(outcomes)} series",
    )
    if not failed:
        registry.end_run(parent_run_id)
        return table
    registry.end_runs([parent_run_id], "FAILED", f"series failed: {', '.join(failed)}")
    others = "none finished" if len(failed) == len(outcomes) else "the others finished"
    raise SeriesFailed(f"{len(failed)} of {len(outcomes)} series failed ({', '.join(failed)}); {others}:\n{text}")
