"""Day types from the date: workday, weekend or public holiday (a holiday wins over a weekend)."""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd

from tasks.evaluation import SEASON

WORKDAY, WEEKEND, HOLIDAY = 0, 1, 2


def derive_day_types(dates: pd.Series, country: str, subdivision: str | None = None) -> pd.Series:
    """0 workday, 1 Saturday/Sunday, 2 public holiday (observed days included) in `country`; a weekend day the
    country works instead of a day off (China's make-up workdays around a long holiday) is a workday."""
    years = sorted({int(y) for y in dates.dt.year.dropna()})
    try:
        calendar = holidays.country_holidays(country, subdiv=subdivision, years=years)
    except NotImplementedError as error:
        raise ValueError(f"holiday calendar: unknown country/subdivision {country!r}/{subdivision!r}") from error
    is_holiday = dates.dt.date.map(lambda day: day in calendar if pd.notna(day) else False).astype(bool)
    worked = dates.dt.date.map(lambda day: day in calendar.weekend_workdays if pd.notna(day) else False).astype(bool)
    day_type = ((dates.dt.day_of_week >= 5) & ~worked).astype("int64").where(~is_holiday, HOLIDAY)
    return day_type.astype("int64").rename("day_type")


def unlike_weekday(day_types: np.ndarray) -> np.ndarray:
    """Per day: whether it is not a holiday and not of the type most days of its weekday have (rows are consecutive
    days, so a weekday is a row modulo 7; holidays left out of the count): a weekend day worked instead of a day
    off (China's make-up workdays), which a weekly season takes for a weekend day, or a weekday rested."""
    day_types = np.asarray(day_types)
    usual = np.full(len(day_types), -1)
    for weekday in range(SEASON):
        types = day_types[weekday::SEASON]
        kinds, counts = np.unique(types[types != HOLIDAY], return_counts=True)
        if len(kinds):
            usual[weekday::SEASON] = kinds[np.argmax(counts)]
    return (day_types != HOLIDAY) & (day_types != usual)
