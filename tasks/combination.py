"""Combining the LSTM's forecast with the statistical peers', weighted on validation days only.

Forecast combination is the most reliable accuracy lever in the forecasting literature (the
M4 and M5 winners were combinations): members that err differently cancel part of each
other's error, and a member that does badly on a city gets little weight there instead of
being the whole forecast. The weights come from each member's errors on the fit's own
validation days (the last `weighting_days` of the `validation_days` training days, which no
member was fitted on and the networks did not stop early on), so they are chosen per city
and per fit, never from test days.

Public holidays are the days the statistical peers know nothing about: they forecast a normal
such weekday, and a validation window's holidays carried 15-35% of every member's error
(benchmarks/README.md). With `model.holiday_memory`, a peer's forecast of a holiday is scaled
by how much that holiday differed from a normal such weekday a year before (holiday_factors),
and a holiday's errors do not weight the members (one day that every member but the networks
misses would otherwise set the weights of the following weeks). With `model.holidays_as_normal_days`, the
peers also forecast from a history whose holidays are normal days (as_normal_days): seasonal naive and a
weekly season would otherwise forecast the same weekday a week after a holiday from its low day. With
`model.days_unlike_their_weekday`, a day unlike its weekday (a Sunday worked instead of a day off, China's make-up
workdays; tasks/calendar.unlike_weekday) is treated alike: the peers forecast it as a normal such weekday scaled as
recent days of its type differ from one (unlike_weekday_factors), its errors weight no member, and later days see it
as a normal such weekday.

A day far outside anything the networks were trained on (a level shift, a change in how travellers are counted:
Staten Island Railway's weekends fell to nothing in June 2020 and came back; NYC buses went from about 35,000
counted a day to 787,000 when front-door boarding resumed) puts their inputs
where they never learned anything, and their forecast is an extrapolation. With `model.held_out_after_surprise`
(["lstm"]), while the networks' input window holds a day twice as far from a normal such weekday as any training
day (surprised_rows), the networks give their weight to the peers in proportion (without_members).
"""

from __future__ import annotations

import numpy as np

from tasks.calendar import HOLIDAY
from tasks.config import CombinationRule
from tasks.encoding import REFERENCE_DAYS, same_weekdays_before, seasonal_reference
from tasks.evaluation import SEASON

SURPRISE_MARGIN = float(np.log(2))  # a day twice as far from normal as any the networks were trained on
YEAR_DAYS = 52 * SEASON  # a year back on the same weekday
HOLIDAY_DRIFT_DAYS = 7  # how far a holiday's day moves from that (Thanksgiving's date, a holiday on a weekend)


def combination_weights(errors: dict[str, np.ndarray], rule: CombinationRule) -> dict[str, float]:
    """Weights summing to 1 per member from its errors (actual - forecast) on the validation days.

    inverse_mae / inverse_mse: proportional to 1 / MAE or 1 / MSE (Bates and Granger's rule);
    equal: 1 / members; trimmed: equal over the better half by MAE (ties kept); best: all on
    the lowest MAE (the first listed on ties). A member with a non-finite error gets no weight.
    """
    mae = {name: float(np.mean(np.abs(e))) for name, e in errors.items()}
    finite = {name: m for name, m in mae.items() if np.isfinite(m)}
    if not finite:
        raise ValueError(f"no member has a finite validation error: {mae}")
    if rule == "equal":
        raw = dict.fromkeys(finite, 1.0)
    elif rule == "trimmed":
        cut = sorted(finite.values())[(len(finite) - 1) // 2]
        raw = {name: 1.0 for name, m in finite.items() if m <= cut}
    elif rule == "best":
        raw = {min(finite, key=finite.get): 1.0}
    else:
        power = 2 if rule == "inverse_mse" else 1
        score = {name: float(np.mean(np.abs(errors[name]) ** power)) for name in finite}
        floor = 1e-12 * max(max(score.values()), 1.0)  # a member without error takes (nearly) all the weight
        raw = {name: 1.0 / max(v, floor) for name, v in score.items()}
    total = sum(raw.values())
    return {name: raw.get(name, 0.0) / total for name in errors}


def combine(forecasts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted sum of the members' forecasts (members without weight are not needed)."""
    used = [name for name, w in weights.items() if w > 0]
    return np.sum([weights[name] * np.asarray(forecasts[name], dtype=float) for name in used], axis=0)


def holiday_factors(travellers: np.ndarray, day_types: np.ndarray, weekdays: np.ndarray, unlike: np.ndarray) -> np.ndarray:
    """Per day: the ratio of a holiday-typed day to a normal such weekday, as remembered from before it; 1 on
    every other day.

    The ratio is exp(log travellers - normal_reference) of the holiday-typed day nearest to 52 weeks before
    (within HOLIDAY_DRIFT_DAYS: the same holiday a year ago); without one (less than a year of history), the
    median of that ratio over the holidays before the day that fell, as it does, on a weekday or on a weekend
    (`weekdays`: 0 Monday .. 6 Sunday; a Saturday's Fourth of July is not a Monday's Memorial Day); without
    any, 1. Only days before each day are used, so a day with unknown travellers (a future day) gets a factor too.
    """
    log_values = log_travellers(travellers)
    day_types = np.asarray(day_types)
    holidays = np.flatnonzero(day_types == HOLIDAY)
    weekend = np.asarray(weekdays) >= 5
    residual = np.full(len(day_types), np.nan)
    residual[holidays] = log_values[holidays] - normal_reference(log_values, day_types, holidays, unlike)
    factors = np.ones(len(day_types))
    for day in holidays:
        known = holidays[(holidays < day) & np.isfinite(residual[holidays])]
        drift = np.abs(day - known - YEAR_DAYS)
        if len(known) and drift.min() <= HOLIDAY_DRIFT_DAYS:
            factors[day] = np.exp(residual[known[np.argmin(drift)]])
        elif (alike := known[weekend[known] == weekend[day]]).size:
            factors[day] = np.exp(np.median(residual[alike]))
    return factors


def as_normal_days(travellers: np.ndarray, day_types: np.ndarray, unlike: np.ndarray) -> np.ndarray:
    """Travellers with each public holiday (day type 2) and each day of `unlike` (days unlike their weekday,
    tasks/calendar.unlike_weekday, or none) replaced by a normal such weekday: the median of up to 3 of the last 4 same
    weekdays that were neither (normal_reference); a day without one keeps its value. Only days before each such day
    are used, so a forecast from the result still sees no later day."""
    values = np.asarray(travellers, dtype=float).copy()
    day_types = np.asarray(day_types)
    unusual = np.flatnonzero((day_types == HOLIDAY) | unlike)
    normal = np.exp(normal_reference(log_travellers(values), day_types, unusual, unlike))
    known = np.isfinite(normal)
    values[unusual[known]] = normal[known]
    return values


def unlike_weekday_factors(travellers: np.ndarray, day_types: np.ndarray, unlike: np.ndarray) -> np.ndarray:
    """Per day: on a day of `unlike` (unlike its weekday), the ratio of recent days of its type (the encoding's
    seasonal_reference: up to 3 of the last 4 weeks' days of its type, at least a week back) to a normal such weekday
    (normal_reference); 1 on every other day and where either is unknown. A worked Sunday's peers then forecast a
    workday."""
    log_values, day_types = log_travellers(travellers), np.asarray(day_types)
    days = np.flatnonzero(unlike)
    ratio = np.exp(
        seasonal_reference(log_values, day_types, unlike, days)[days] - normal_reference(log_values, day_types, days, unlike)
    )
    factors = np.ones(len(day_types))
    factors[days] = np.where(np.isfinite(ratio), ratio, 1.0)
    return factors


def log_travellers(travellers: np.ndarray) -> np.ndarray:
    """log(travellers), at least log 1 (a day without travellers); NaN where travellers are unknown (a future day)."""
    values = np.asarray(travellers, dtype=float)
    logs = np.log(np.maximum(values, 1.0))
    logs[~np.isfinite(values)] = np.nan
    return logs


def normal_reference(log_values: np.ndarray, day_types: np.ndarray, days: np.ndarray, unlike: np.ndarray) -> np.ndarray:
    """Per day of `days`: the median log value of up to 3 of the last 4 same weekdays that were neither holidays nor
    days of `unlike` (NaN without one; unlike the encoding's seasonal_reference, a holiday is not compared with an
    earlier one)."""
    usual = (np.asarray(day_types) != HOLIDAY) & ~np.asarray(unlike, dtype=bool)
    reference = np.full(len(days), np.nan)
    for i, day in enumerate(days):
        normal = [j for j in same_weekdays_before(day) if usual[j] and np.isfinite(log_values[j])][:REFERENCE_DAYS]
        if normal:
            reference[i] = np.median(log_values[normal])
    return reference


def without_holidays(errors: dict[str, np.ndarray], holidays: np.ndarray) -> dict[str, np.ndarray]:
    """The errors that weight the members: those of days that are not holidays (`holidays`, a mask aligned
    with every member's errors); all of them when every day is one (a week-long holiday filling a short window)."""
    holidays = np.asarray(holidays, dtype=bool)
    if any(len(e) != len(holidays) for e in errors.values()):
        raise ValueError(f"{len(holidays)} holiday flags for errors of {', '.join(str(len(e)) for e in errors.values())} days")
    if holidays.all():
        return errors
    return {name: np.asarray(e)[~holidays] for name, e in errors.items()}


def value_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values."""
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return float(finite.min()), float(finite.max())


def surprised_rows(residuals: np.ndarray, known: tuple[float, float], lags: int, rows: np.ndarray) -> np.ndarray:
    """Per row of `rows`: whether any of the `lags` days before it has a residual (log travellers minus the seasonal
    reference) beyond the `known` range by more than SURPRISE_MARGIN, i.e. whether the networks' input window holds
    a day unlike any they were trained on (a level shift, a change in how travellers are counted)."""
    low, high = known
    residuals = np.asarray(residuals, dtype=float)
    with np.errstate(invalid="ignore"):  # NaN (the first week, a future day) is not a surprise
        beyond = (residuals < low - SURPRISE_MARGIN) | (residuals > high + SURPRISE_MARGIN)
    return np.array([bool(beyond[max(row - lags, 0) : row].any()) for row in np.asarray(rows, dtype=int)], dtype=bool)


def without_members(weights: dict[str, float], left_out: list[str]) -> dict[str, float]:
    """The weights with these members' moved to the others in proportion; unchanged when no other has weight."""
    kept = {name: w if name not in left_out else 0.0 for name, w in weights.items()}
    total = sum(kept.values())
    return {name: w / total for name, w in kept.items()} if total > 0 else weights
