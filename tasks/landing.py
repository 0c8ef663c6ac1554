"""Ingest the landing folder into the history store, one file at a time, all or nothing per file.

Files are validated with the input schema, ordered by their first day, and merged: new days
are appended, revisions of recent days applied and recorded, a file that leaves a gap waits
in the folder for the missing days, anything else is rejected with its report beside it.
Processed files move to `processed/`, rejected ones to `rejected/`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from schemas.daily import DATE, TARGET
from tasks import arrivals, history_store
from tasks.config import Settings
from tasks.errors import RunStopped
from tasks.input_file import (
    REPORT_COLUMNS,
    InputValidationError,
    canonical_names,
    parse_input,
    read_csv,
    read_history_file,
    to_input_format,
    validation_report,
    value_columns,
    write_report,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file."""

    name: str
    outcome: str  # added | nothing_new | duplicate | waiting | rejected | started
    reason: str
    days_added: int = 0
    days_revised: int = 0


@dataclass(frozen=True)
class IngestResult:
    """Every file's outcome and the resulting history's last day."""

    files: list[FileOutcome] = field(default_factory=list)
    last_date: str | None = None
    changes_through: int = 0  # the store's change count after this ingest
    untrained_changes: int = 0  # changes no completed retrain has trained on (this run's and any failed run's)

    @property
    def days_added(self) -> int:
        return sum(f.days_added for f in self.files)

    @property
    def days_revised(self) -> int:
        return sum(f.days_revised for f in self.files)

    @property
    def earlier_changes(self) -> int:
        """Changes stored by earlier runs that did not finish, trained on with this run's."""
        return self.untrained_changes - self.days_added - self.days_revised

    @property
    def held_back(self) -> tuple[str, ...]:
        """`<file>: waiting|rejected (<reason>)` per file that added nothing, so a run with no new data says why."""
        return tuple(f"{f.name}: {f.outcome} ({f.reason})" for f in self.files if f.outcome in ("waiting", "rejected"))

    @property
    def changed(self) -> bool:
        """Whether the stored history gained or changed any day."""
        return self.days_added + self.days_revised > 0


def is_csv(path: Path) -> bool:
    """Whether a name ends in .csv, in any case (`DAY.CSV` from a Windows share counts)."""
    return path.suffix.lower() == ".csv"


def landing_name(name: str) -> str:
    """A file name safe to create in the landing folder: a plain `*.csv` name, no folders, not hidden."""
    if Path(name).name != name or "\\" in name or name.startswith(".") or not is_csv(Path(name)):
        raise ValueError(f"{name!r}: a landing file name must be a plain name ending in .csv, with no folder or '..' in it")
    return name


class WaitingFileExists(FileExistsError):
    """A file of the same name is still waiting in the landing folder."""


def drop_into_landing(source: Path, landing: Path) -> Path:
    """Copy a file into the landing folder under its checked name; it appears whole or not at all.

    A file waiting there under the same name is never overwritten, even by a drop started at the
    same moment: each copy goes to its own hidden partial file, which is then linked to the name
    (creating a link fails if the name exists, atomically; a rename would replace it).
    """
    if not source.is_file():
        raise ValueError(f"{source}: {'is a folder' if source.is_dir() else 'no such file'}; ingest takes one CSV file")
    name = landing_name(source.name)
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / name
    handle, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=landing)
    try:
        with os.fdopen(handle, "wb") as copy, source.open("rb") as original:
            shutil.copyfileobj(original, copy)
        os.link(partial, target)  # a running ingest never sees half a file
    except FileExistsError:
        raise WaitingFileExists(f"{target} is already in the landing folder and not yet ingested: rename the new file") from None
    finally:
        os.unlink(partial)
    return target


SERIES_SEPARATOR = "__"  # a series' daily file of a long-format config: <series>__<anything>.csv


def series_of_file(name: str, settings: Settings) -> str:
    """The series a daily file is for, from its name `<series>__<anything>.csv`; one of the configured file's series."""
    from tasks.series_tasks import series_names

    series, separator, _ = name.partition(SERIES_SEPARATOR)
    known = series_names.fn(settings)
    if not separator or series not in known:
        raise ValueError(
            f"{name}: a daily file of {settings.data.path.name} is named <series>{SERIES_SEPARATOR}<anything>.csv, "
            f"<series> one of {', '.join(known)}"
        )
    return series


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def move_into(path: Path, folder: Path) -> Path:
    """Move a file into `folder`, never overwriting an earlier file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{path.stem}.{stamp}{path.suffix}"
    return Path(shutil.move(path, target))


def reject(path: Path, report: pd.DataFrame, reason: str) -> FileOutcome:
    """Move a file to rejected/ with its report (CSV and JSON) beside it."""
    moved = move_into(path, path.parent / "rejected")
    write_report(report, moved.parent, stem=f"{moved.name}.report")
    logger.warning("%s rejected: %s", path.name, reason)
    return FileOutcome(path.name, "rejected", reason)


def reason_report(path: Path, reason: str) -> pd.DataFrame:
    """A one-line report for a file refused for how it fits the history, not for a broken rule."""
    return pd.DataFrame(
        [{"file": str(path), "line": None, "column": "", "value": "", "rule": reason, "check": "merge"}], columns=REPORT_COLUMNS
    )


def file_lines(path: Path, settings: Settings) -> dict[pd.Timestamp, int]:
    """The line of each day in a file that passed validation (for reports about how it fits the history)."""
    parsed = parse_input(read_csv(path, settings.data), settings.data).parsed
    return {day: int(index) + 2 for index, day in parsed[DATE].items()}


def merge_failures(merged: pd.DataFrame, settings: Settings, path: Path) -> pd.DataFrame:
    """Rules the history would break with this file in it (a cumulative count falling, say)."""
    as_input = to_input_format(merged, settings.data)
    report = validation_report(parse_input(as_input, settings.data), settings.data, path)
    if report.empty:
        return report
    # The report's lines are positions in the merged history: name the day, and its line in the file.
    days = merged[DATE].dt.strftime("%Y-%m-%d").to_numpy()
    report["rule"] = [
        f"{rule} (on {days[line - 2]}, with the stored history)"
        for rule, line in zip(report["rule"], report["line"], strict=True)
    ]
    lines = file_lines(path, settings)
    report["line"] = pd.array([lines.get(pd.Timestamp(days[line - 2])) for line in report["line"]], dtype="Int64")
    return report


def outlier_report(merged: pd.DataFrame, plan: arrivals.MergePlan, settings: Settings, path: Path) -> pd.DataFrame:
    """A report row per new or revised day whose travellers are absurd next to the weeks before it."""
    factor = settings.retrain.outlier_factor
    if not factor:
        return pd.DataFrame(columns=REPORT_COLUMNS)
    dates = pd.concat([plan.new_days[DATE], plan.revisions.loc[plan.revisions["column"] == TARGET, DATE]])
    outliers = arrivals.outlier_days(merged, dates, factor)
    if outliers.empty:
        return pd.DataFrame(columns=REPORT_COLUMNS)
    lines = file_lines(path, settings)
    rows = [
        {
            "file": str(path),
            "line": lines.get(day.date),
            "column": settings.data.target_column,
            "value": f"{day.value:.0f}",
            "rule": f"on {day.date:%Y-%m-%d}: {day.ratio:.3g}x the median of the {arrivals.OUTLIER_WINDOW_DAYS} days before ({day.median:,.0f}); "
            f"the limit is {factor:g}x either way (retrain.outlier_factor)",
            "check": "outlier",
        }
        for day in outliers.itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=REPORT_COLUMNS).astype({"line": "Int64"})


def ingest_one(
    store: history_store.Store, stored: pd.DataFrame, path: Path, incoming: pd.DataFrame, sha: str, settings: Settings
) -> tuple[FileOutcome, pd.DataFrame]:
    """Merge one validated file; return its outcome and the history after it."""
    columns = value_columns(settings.data)
    display = {canonical: name for name, canonical in canonical_names(settings.data).items()}
    plan = arrivals.plan_merge(stored, incoming, columns, settings.retrain.revision_window_days, display)
    if plan.outcome == "wait":
        return FileOutcome(path.name, "waiting", plan.reason), stored
    if plan.outcome == "reject":
        return reject(path, reason_report(path, plan.reason), plan.reason), stored
    merged = arrivals.merged_history(stored, plan)
    failures = merge_failures(merged, settings, path)
    if len(failures):
        return reject(path, failures, f"{len(failures)} rule(s) broken together with the stored history"), stored
    outliers = outlier_report(merged, plan, settings, path)
    if len(outliers):
        return reject(
            path, outliers, f"{len(outliers)} outlier day(s) held back: check the values, or ingest with retrain.outlier_factor=0"
        ), stored
    span = (incoming[DATE].min(), incoming[DATE].max())
    history_store.apply_file(store, sha, path.name, plan.new_days, plan.revisions, span)
    outcome = "added" if plan.outcome == "apply" else "nothing_new"
    return FileOutcome(
        path.name, outcome, plan.reason, len(plan.new_days), plan.revisions[DATE].nunique() if len(plan.revisions) else 0
    ), merged


def copy_outcome(path: Path, original: str, outcomes: list[FileOutcome]) -> FileOutcome:
    """The outcome of a file with the same bytes as `original` in the same delivery: the original's."""
    fate = next(o.outcome for o in outcomes if o.name == original)
    reason = f"the same content as {original}"
    if fate == "waiting":
        return FileOutcome(path.name, "waiting", f"{reason}, which waits")
    if fate == "rejected":
        return reject(path, reason_report(path, f"{reason}, which was rejected"), f"{reason}, which was rejected")
    move_into(path, path.parent / "processed")
    return FileOutcome(path.name, "duplicate", f"{reason}, ingested in this run")


class HistoryStoreMissing(RunStopped):
    """The configured history store holds nothing and the run was not asked to start it."""


def open_history(settings: Settings, init: bool = False) -> tuple[history_store.Store, FileOutcome | None]:
    """The history store; with `init`, started from the configured data file when it holds nothing yet.

    Never started unasked: a mistyped or lost retrain.history_path would otherwise become a new
    store seeded from the bundled sample, and a model trained and registered on it.
    """
    url = settings.retrain.store_url
    if url.startswith("sqlite:///"):
        store_file = Path(url.removeprefix("sqlite:///"))
        if not init and not store_file.exists():
            raise HistoryStoreMissing(missing_store_message(settings))
        store_file.parent.mkdir(parents=True, exist_ok=True)  # a series' own folder
    store = history_store.open_store(url, value_columns(settings.data), settings.retrain.history_schema)
    if not history_store.read_history(store).empty:
        return store, None
    if not init:
        raise HistoryStoreMissing(missing_store_message(settings))
    path = settings.data.path
    initial = read_history_file(path, settings.data)
    span = (initial[DATE].min(), initial[DATE].max())
    history_store.apply_file(store, file_sha256(path), path.name, initial, pd.DataFrame(columns=arrivals.REVISION_COLUMNS), span)
    logger.warning("history store %s started with %d days from %s", url, len(initial), path)
    return store, FileOutcome(path.name, "started", f"history store started from {path}", days_added=len(initial))


def missing_store_message(settings: Settings) -> str:
    return (
        f"no history in the store {settings.retrain.store_url}: start it from {settings.data.path} with "
        "`travel-forecast retrain --init` (a deployment run: --param init=true), or point retrain.history_path "
        "(history_url) at the existing store; nothing was trained, registered or forecast"  # retrain, predict, live
    )


def ingest_landing(settings: Settings, init: bool = False) -> IngestResult:
    """Process every CSV in the landing folder; return what happened to each (`init`: see open_history)."""
    store, started = open_history(settings, init)
    folder = settings.retrain.incoming_dir
    folder.mkdir(parents=True, exist_ok=True)
    outcomes: list[FileOutcome] = [started] if started else []
    pending: list[tuple[Path, pd.DataFrame, str]] = []
    first_with_sha: dict[str, str] = {}
    copies: list[tuple[Path, str]] = []
    for path in sorted(p for p in folder.iterdir() if is_csv(p)):
        if path.is_symlink() or not path.is_file():  # never follow a link out of the store's folders
            outcomes.append(
                reject(path, reason_report(path, "not a regular file (a link or a folder): not read"), "not a regular file")
            )
            continue
        sha = file_sha256(path)
        if history_store.is_ingested(store, sha):
            move_into(path, folder / "processed")
            outcomes.append(FileOutcome(path.name, "duplicate", "the same file was ingested before"))
            continue
        if sha in first_with_sha:  # the same bytes under two names in one delivery: it shares the first's fate
            copies.append((path, first_with_sha[sha]))
            continue
        first_with_sha[sha] = path.name
        try:
            pending.append((path, read_history_file(path, settings.data.daily_file), sha))
        except (InputValidationError, ValueError) as error:
            report = error.report if isinstance(error, InputValidationError) else reason_report(path, str(error))
            outcomes.append(reject(path, report, f"{len(report)} validation failure(s)"))
    stored = history_store.read_history(store)
    pending.sort(key=lambda item: (item[1][DATE].min(), item[0].name))
    progress, waits = True, {}
    while pending and progress:  # a file that filled a gap may let a waiting one through
        progress, waiting = False, []
        for path, incoming, sha in pending:
            outcome, stored = ingest_one(store, stored, path, incoming, sha, settings)
            if outcome.outcome == "waiting":
                waiting.append((path, incoming, sha))
                waits[path] = outcome
                continue
            if outcome.outcome != "rejected":
                move_into(path, folder / "processed")
            outcomes.append(outcome)
            progress = True
        pending = waiting
    for path, _, _ in pending:
        logger.info("%s waits: %s", path.name, waits[path].reason)
    outcomes += [waits[path] for path, _, _ in pending]
    outcomes += [copy_outcome(path, original, outcomes) for path, original in copies]
    last = stored[DATE].max().strftime("%Y-%m-%d") if len(stored) else None
    changes = history_store.changes_count(store)
    return IngestResult(outcomes, last, changes, changes - history_store.trained_through(store))
