"""pandera models at the data boundaries: the parsed input file and the validated history.

Input columns are renamed to canonical names before validation: the configured date,
target and day-type columns become `date`, `travellers` and `day_type`; case-count
columns keep their own names and get their checks from the config (`input_schema`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

DATE, TARGET, DAY_TYPE = "date", "travellers", "day_type"


def content_sha256(history: pd.DataFrame) -> str:
    """A validated history's content hash: the same days with the same values, the same hash."""
    return hashlib.sha256(pd.util.hash_pandas_object(history, index=False).to_numpy().tobytes()).hexdigest()


def _finite(series: pd.Series) -> pd.Series:
    return series.isna() | np.isfinite(series)


def _whole_number(series: pd.Series) -> pd.Series:
    return ~np.isfinite(series) | (series % 1 == 0)


# Counts are parsed as floats and stored as int64: above 2**53 neither holds them exactly.
MAX_COUNT = 2**53


def _not_huge(series: pd.Series) -> pd.Series:
    return ~np.isfinite(series) | (series <= MAX_COUNT)


def cumulative_check(columns: list[str]) -> pa.Check:
    """Each cumulative column never falls from one dated row to the next.

    A frame-wide check, so rows whose date did not parse are left out of the order;
    pandera reports each failing cell as {column: value}.
    """

    def non_decreasing(frame: pd.DataFrame) -> pd.DataFrame:
        passed = pd.DataFrame(True, index=frame.index, columns=frame.columns)
        dated = frame[DATE].notna() if DATE in frame else pd.Series(True, index=frame.index)
        for column in (c for c in columns if c in frame):
            values = frame.loc[dated, column]
            passed.loc[dated, column] = values.isna() | (values.ffill().diff().fillna(0) >= 0)
        return passed

    return pa.Check(non_decreasing, name="non_decreasing")


def _no_missing_days(dates: pd.Series) -> pd.Series:
    # Rows are in date order; a repeated date is the uniqueness check's to report.
    step = (dates - dates.ffill().shift()).dt.days
    return step.isna() | (step <= 1)


FINITE = pa.Check(_finite, name="finite")
WHOLE_NUMBER = pa.Check(_whole_number, name="whole_number")
NOT_HUGE = pa.Check(_not_huge, name="not_huge")
NO_MISSING_DAYS = pa.Check(_no_missing_days, name="no_missing_days")


def count_column() -> pa.Column:
    """A required column of non-negative whole counts."""
    return pa.Column(float, checks=[pa.Check.ge(0), FINITE, WHOLE_NUMBER, NOT_HUGE], nullable=False)


class DailyInput(pa.DataFrameModel):
    """A daily input file after parsing: unparseable dates are NaT, unparseable numbers NaN."""

    date: Series[pd.Timestamp] = pa.Field(nullable=False, unique=True)
    travellers: Series[float] = pa.Field(ge=0, nullable=False)

    @pa.check(TARGET, name="finite")
    def travellers_finite(cls, series: Series[float]) -> Series[bool]:
        return _finite(series)

    @pa.check(TARGET, name="whole_number")
    def travellers_whole(cls, series: Series[float]) -> Series[bool]:
        return _whole_number(series)

    @pa.check(TARGET, name="not_huge")
    def travellers_not_huge(cls, series: Series[float]) -> Series[bool]:
        return _not_huge(series)

    class Config:
        coerce = True
        strict = False


class DailyHistory(pa.DataFrameModel):
    """Validated history: one row per day, in order, no gaps, day types known."""

    date: Series[pd.Timestamp] = pa.Field(nullable=False, unique=True)
    travellers: Series[np.int64] = pa.Field(ge=0)
    day_type: Series[np.int64] = pa.Field(ge=0)

    @pa.dataframe_check(name="consecutive_days")
    def consecutive_days(cls, frame: pd.DataFrame) -> bool:
        return bool((frame[DATE].diff().dropna() == pd.Timedelta(days=1)).all())

    class Config:
        coerce = True
        strict = False


def not_after(latest: pd.Timestamp) -> pa.Check:
    """No day after `latest`: a day's count exists only once the day is over."""
    return pa.Check(lambda dates: dates.isna() | (dates <= latest), name="not_in_future")


def input_schema(
    cumulative: list[str],
    counts: list[str],
    day_type_codes: list[int] | None,
    reject_gaps: bool,
    latest_day: pd.Timestamp,
) -> pa.DataFrameSchema:
    """DailyInput plus the configured count columns, cumulative rule, day-type codes, gap rule and no future days."""
    schema = DailyInput.to_schema()
    extra = {name: count_column() for name in dict.fromkeys(counts + cumulative)}
    if day_type_codes is not None:
        allowed = [float(c) for c in day_type_codes]
        codes = pa.Check(lambda series: series.isna() | series.isin(allowed), name="day_type_code")
        extra[DAY_TYPE] = pa.Column(float, checks=[codes], nullable=False)
    schema = schema.add_columns(extra)
    if cumulative:
        schema = pa.DataFrameSchema(
            schema.columns, checks=[cumulative_check(cumulative)], coerce=True, strict=False, name="DailyInput"
        )
    date_checks = [*schema.columns[DATE].checks, not_after(latest_day), *([NO_MISSING_DAYS] if reject_gaps else [])]
    return schema.update_column(DATE, checks=date_checks)
