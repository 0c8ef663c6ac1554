"""Read a daily CSV, parse it into canonical columns, validate it lazily, report every failure."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.errors

from schemas.daily import DATE, DAY_TYPE, TARGET, DailyHistory, input_schema
from tasks.calendar import derive_day_types
from tasks.config import SERIES_NAME, SERIES_NAME_RULE, DataConfig
from tasks.errors import InputUnreadable, RunStopped

logger = logging.getLogger(__name__)

REPORT_COLUMNS = ["file", "line", "column", "value", "rule", "check"]

# pandera's built-in check names, in words a data owner reads.
RULE_TEXT = {
    "column_in_dataframe": "required column is missing",
    "not_nullable": "a value is required: empty, or not a number / not a date in the configured format",
    "field_uniqueness": "each date appears once",
    "greater_than_or_equal_to(0)": "not negative",
    "finite": "a finite number (no inf)",
    "whole_number": "a whole number",
    "not_huge": "at most 9,007,199,254,740,992 (2^53)",
    "non_decreasing": "cumulative: never below the previous day",
    "no_missing_days": "the day before is present (no gap in the dates)",
    "day_type_code": "one of the day-type codes in data.day_type_codes",
    "not_in_future": "not a future day (no later than today anywhere on Earth)",
}


class InputValidationError(RunStopped, ValueError):
    """The input file broke one or more rules; `report` lists every failure."""

    def __init__(self, path: Path, report: pd.DataFrame, report_file: Path | None = None):
        self.path, self.report, self.report_file = path, report, report_file  # report_file: every row, when written
        super().__init__(f"{path}: {len(report)} validation failure(s)\n{summarize_report(report)}")


@dataclass(frozen=True)
class ParsedInput:
    """The file as written (strings) and the same rows parsed to canonical names and types."""

    raw: pd.DataFrame
    parsed: pd.DataFrame


def line_of(data: bytes, offset: int) -> int:
    """1-based line number of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def read_text(path: Path, config: DataConfig) -> str:
    """The file as text, refused with its name when it is missing, too big, binary or in another encoding."""
    if not path.is_file():
        raise InputUnreadable(f"{path}: {'a folder, not a file' if path.is_dir() else 'no such input file'}")
    size = path.stat().st_size
    if size > config.max_file_bytes:  # refused unread: memory stays bounded whatever lands
        raise InputUnreadable(f"{path}: {size:,} bytes, over the {config.max_file_bytes:,}-byte limit (data.max_file_bytes)")
    data = path.read_bytes()
    if (nul := data.find(b"\0")) >= 0:
        raise InputUnreadable(f"{path}: line {line_of(data, nul)}: binary content, not a CSV text file")
    try:
        return data.decode(config.encoding)
    except UnicodeDecodeError as error:
        line = line_of(data, error.start)
        raise InputUnreadable(
            f"{path}: line {line}: byte {data[error.start]:#04x} is not {config.encoding} text; "
            "if the file uses another encoding (e.g. gbk), set data.encoding"
        ) from None


def refuse_values_past_the_header(text: str, path: Path, delimiter: str) -> None:
    """Refuse rows with values in fields the header does not name; empty ones (a trailing delimiter) are harmless."""
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    width = len(next(rows, []))
    lines = [line for line, row in enumerate(rows, start=2) if len(row) > width and any(cell.strip() for cell in row[width:])]
    if lines:
        shown = ", ".join(str(line) for line in lines[:5]) + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
        raise InputUnreadable(
            f"{path}: line {shown}: more values than the header has columns ({width}); add the column's name or remove the values"
        )


def read_csv(path: Path, config: DataConfig) -> pd.DataFrame:
    """Read every cell as written so the report can quote it."""
    text = read_text(path, config)
    refuse_values_past_the_header(text, path, config.delimiter)
    try:
        # index_col=False: rows one field longer than the header (a trailing delimiter) must not turn the
        # first column into the index and shift every other column one place left.
        raw = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True, sep=config.delimiter, index_col=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputUnreadable(f"{path}: not a readable CSV file ({error})") from error
    if len(raw.columns) == 1 and len(config.required_columns) > 1:
        header = raw.columns[0]
        found = [d for d in ",;\t|" if d != config.delimiter and d in header]
        hint = f" the header seems separated by {found[0]!r}, not {config.delimiter!r} (data.delimiter)" if found else ""
        raise InputUnreadable(f"{path}: line 1: one column {header!r};{hint or ' expected ' + repr(config.required_columns)}")
    if raw.empty:
        raise InputUnreadable(f"{path}: a header and no data rows")
    return raw


def canonical_names(config: DataConfig) -> dict[str, str]:
    """Map the file's role columns to canonical names."""
    names = {config.date_column: DATE, config.target_column: TARGET}
    if config.day_type_column:
        names[config.day_type_column] = DAY_TYPE
    return names


def parse_dates(texts: pd.Series, date_format: str) -> pd.Series:
    """Dates in `date_format`; unparseable ones become NaT.

    A valid date past what a nanosecond timestamp holds (after 2262-04-11, e.g. a mistyped
    2999) becomes the latest one that fits: still reported as a day in the future, not as garbage.
    """
    texts = texts.astype(str).str.strip()
    dates = pd.to_datetime(texts, format=date_format, errors="coerce")
    for row in dates.index[dates.isna()]:
        try:
            day = datetime.strptime(texts[row], date_format)
        except ValueError:
            continue
        if day > pd.Timestamp.max:
            dates[row] = pd.Timestamp.max.normalize()
    return dates


def parse_input(raw: pd.DataFrame, config: DataConfig) -> ParsedInput:
    """Parse dates and numbers (failures become NaT/NaN for the schema to report), sort by date."""
    raw = raw.reset_index(drop=True)
    parsed = raw.rename(columns=canonical_names(config))
    if DATE in parsed:
        parsed[DATE] = parse_dates(parsed[DATE], config.date_format)
    numeric = [TARGET, DAY_TYPE, *config.case_columns, *config.cumulative_columns, *config.count_columns]
    for column in dict.fromkeys(c for c in numeric if c in parsed):
        parsed[column] = pd.to_numeric(parsed[column].astype(str).str.strip(), errors="coerce").astype(float)
    if TARGET in parsed and config.target_unit != 1:
        parsed[TARGET] = in_travellers(parsed[TARGET], config.target_unit)
    if DATE in parsed:
        parsed = parsed.sort_values(DATE, kind="stable", na_position="last")
    return ParsedInput(raw=raw, parsed=parsed)


def in_travellers(values: pd.Series, unit: float) -> pd.Series:
    """Counts in `unit`s as travellers; products within a millionth of a whole number are that number (1085.26 x 10000)."""
    scaled = values * unit
    whole = scaled.round()
    return whole.where((scaled - whole).abs() < 1e-6, scaled)


def latest_possible_day() -> pd.Timestamp:
    """Today where the calendar is furthest ahead (UTC+14): no file can hold a later finished day."""
    return (pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=14)).tz_localize(None).normalize()


def schema_for(config: DataConfig):
    """The input schema with this config's count columns, day-type codes and gap rule."""
    return input_schema(
        cumulative=config.cumulative_columns,
        counts=[*config.case_columns, *config.count_columns],
        day_type_codes=config.day_type_codes if config.day_type_column else None,
        reject_gaps=config.gap_policy == "reject",
        latest_day=latest_possible_day(),
    )


def validation_report(parsed: ParsedInput, config: DataConfig, path: Path) -> pd.DataFrame:
    """Every rule the file breaks, one row per failure, quoting the cell as written."""
    try:
        schema_for(config).validate(parsed.parsed, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        return _report_rows(errors.failure_cases, parsed.raw, config, path)
    return pd.DataFrame(columns=REPORT_COLUMNS)


def _report_rows(failures: pd.DataFrame, raw: pd.DataFrame, config: DataConfig, path: Path) -> pd.DataFrame:
    user_name = {canonical: name for name, canonical in canonical_names(config).items()}
    rows = []
    for failure in failures.itertuples(index=False):
        missing_column = failure.check == "column_in_dataframe"
        has_row = failure.index is not None and not pd.isna(failure.index)
        # A frame-wide check reports each failing cell as {column: value}.
        cells = failure.failure_case if isinstance(failure.failure_case, dict) else {failure.column: failure.failure_case}
        for column, value in cells.items():
            column = user_name.get(str(value if missing_column else column), str(value if missing_column else column))
            if has_row and column in raw:
                value = raw.at[int(failure.index), column]
            rows.append(
                {
                    "file": str(path),
                    "line": int(failure.index) + 2 if has_row else None,  # 1-based, after the header line
                    "column": column,
                    "value": "" if missing_column else str(value),
                    "rule": RULE_TEXT.get(str(failure.check), str(failure.check)),
                    "check": str(failure.check),
                }
            )
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS).astype({"line": "Int64"})
    return report.sort_values(["line", "column"], na_position="first", kind="stable").reset_index(drop=True)


def format_report(report: pd.DataFrame) -> str:
    """The report as an aligned text table."""
    return report.to_string(index=False, na_rep="-") if len(report) else "no failures"


SUMMARY_LIMIT = 20  # longer reports are summarised per rule and column on screen; the file has every row


def summarize_report(report: pd.DataFrame, limit: int = SUMMARY_LIMIT) -> str:
    """Up to `limit` failures as the table; more as one line per rule and column: count, first lines, example values."""
    if len(report) <= limit:
        return format_report(report)
    lines = []
    for (rule, column), group in report.groupby(["rule", "column"], sort=False, dropna=False):
        rows = group["line"].dropna().astype(int).tolist()
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        where = f"line{'s' if len(rows) > 1 else ''} {shown}" if rows else "the whole file"
        examples = ", ".join(repr(v) for v in list(dict.fromkeys(group["value"].astype(str)))[:3] if v != "")
        lines.append(f"{len(group)} x {column or '-'}: {rule} ({where}{'; e.g. ' + examples if examples else ''})")
    return "\n".join(lines)


def write_report(report: pd.DataFrame, directory: Path, stem: str = "validation_report") -> list[Path]:
    """Write the report as `stem`.csv and `stem`.json into `directory`; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = directory / f"{stem}.csv", directory / f"{stem}.json"
    report.to_csv(csv_path, index=False)
    report.to_json(json_path, orient="records", indent=2)
    return [csv_path, json_path]


def fill_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Add missing days, interpolating counts linearly and rounding to whole numbers.

    Day types of added days stay empty for the calendar to fill.
    """
    full = frame.set_index(DATE).asfreq("D")
    counts = full.columns.drop(DAY_TYPE, errors="ignore")
    full[counts] = full[counts].interpolate(method="time").round()
    return full.reset_index()


def value_columns(config: DataConfig) -> list[str]:
    """The columns of DailyHistory after the date: travellers, every count column, day type."""
    return list(dict.fromkeys([TARGET, *config.case_columns, *config.cumulative_columns, *config.count_columns, DAY_TYPE]))


def to_history(parsed: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """Validated input -> DailyHistory: gaps filled if allowed, day types known, whole counts."""
    columns = [DATE, *value_columns(config)]
    frame = parsed.reset_index(drop=True)[[c for c in columns if c in parsed]]
    frame = fill_gaps(frame) if config.gap_policy == "interpolate" else frame
    calendar = derive_day_types(frame[DATE], config.holiday_country, config.holiday_subdivision)
    frame[DAY_TYPE] = frame[DAY_TYPE].fillna(calendar) if DAY_TYPE in frame else calendar
    history = frame[columns].astype({c: np.int64 for c in columns if c != DATE})
    return DailyHistory.validate(history)


def history_from_frame(raw: pd.DataFrame, config: DataConfig, source: str | Path) -> pd.DataFrame:
    """Parse and validate rows in the input format; return DailyHistory or raise with the full report."""
    parsed = parse_input(raw, config)
    report = validation_report(parsed, config, Path(source))
    if len(report):
        raise InputValidationError(Path(source), report)
    return to_history(parsed.parsed, config)


def split_series(raw: pd.DataFrame, config: DataConfig, path: Path) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """A long-format file's rows per series (in order of first appearance, each keeping the file's row index)
    and a report row per row whose series name is not one."""
    column = config.series_column
    if column not in raw:
        raise InputUnreadable(f"{path}: line 1: no column {column!r} naming each row's series (data.series_column)")
    names = raw[column].astype(str).str.strip()
    bad = ~names.map(lambda name: bool(SERIES_NAME.fullmatch(name)))
    report = pd.DataFrame(
        {
            "file": str(path),
            "line": raw.index[bad] + 2,
            "column": column,
            "value": raw[column][bad].to_numpy(),
            "rule": f"a series name: {SERIES_NAME_RULE}",
        },
        columns=REPORT_COLUMNS,
    ).assign(check="series_name")
    rows = raw[~bad].drop(columns=column)
    return {name: rows[names[~bad] == name] for name in dict.fromkeys(names[~bad])}, report


def series_report(rows: pd.DataFrame, config: DataConfig, path: Path) -> tuple[ParsedInput, pd.DataFrame]:
    """One series' rows parsed and validated, the report's lines those of the whole file."""
    parsed = parse_input(rows, config)
    report = validation_report(parsed, config, path)
    file_lines = {position + 2: int(index) + 2 for position, index in enumerate(rows.index)}
    return parsed, report.assign(line=report["line"].map(file_lines).astype("Int64"))


def series_histories(raw: pd.DataFrame, config: DataConfig, path: Path) -> dict[str, pd.DataFrame]:
    """A long-format file as DailyHistory per series (only `config.series` when set); every failure of every series
    in one InputValidationError."""
    groups, report = split_series(raw, config, path)
    if config.series is not None:
        if config.series not in groups:
            raise InputUnreadable(f"{path}: no rows of series {config.series!r} (data.series); it has {list(groups)}")
        groups = {config.series: groups[config.series]}
    parsed, reports = {}, [report]
    for name, rows in groups.items():
        parsed[name], found = series_report(rows, config, path)
        reports.append(found)
    report = pd.concat(reports).drop_duplicates(["line", "column", "check"])  # a missing column once, not per series
    if len(report):
        raise InputValidationError(path, report.sort_values(["line", "column"], na_position="first").reset_index(drop=True))
    return {name: to_history(rows.parsed, config) for name, rows in parsed.items()}


def read_history_file(path: Path, config: DataConfig) -> pd.DataFrame:
    """Read and validate one input file (one series of it, in long format) into DailyHistory; raise
    InputValidationError listing every failure."""
    raw = read_csv(path, config)
    if config.series_column:
        if config.series is None:
            raise InputUnreadable(f"{path}: a long-format file (data.series_column); name the series to read (data.series)")
        return series_histories(raw, config, path)[config.series]
    history = history_from_frame(raw, config, path)
    logger.info("%s: %d days passed validation", path, len(history))
    return history


def read_every_series(path: Path, config: DataConfig) -> dict[str | None, pd.DataFrame]:
    """Every series of a long-format file by name, or a one-series file's history under None."""
    if config.series_column and config.series is None:
        return series_histories(read_csv(path, config), config, path)
    return {config.series: read_history_file(path, config)}


def to_input_format(history: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """DailyHistory back in the configured input format (the inverse of parsing)."""
    frame = history.copy()
    frame[DATE] = frame[DATE].dt.strftime(config.date_format)
    if config.target_unit != 1:
        frame[TARGET] = frame[TARGET] / config.target_unit
    if not config.day_type_column:
        frame = frame.drop(columns=DAY_TYPE)
    return frame.rename(columns={canonical: name for name, canonical in canonical_names(config).items()})
