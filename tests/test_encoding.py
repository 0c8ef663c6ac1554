"""The two encodings: exact values, fitted on training rows only, decoded back to travellers."""

import numpy as np
import pytest
from conftest import counting_history

from tasks.calendar import unlike_weekday
from tasks.config import DataConfig
from tasks.encoding import fit_encoder, one_hot, seasonal_reference, weekly_new

DATA = DataConfig(case_columns=["cases"], cumulative_columns=["cases"])


_history = counting_history


def test_seasonal_reference_is_the_median_of_recent_same_weekdays_of_the_same_type():
    values = np.arange(36, dtype=float)
    day_types = np.zeros(36, dtype=int)
    day_types[21] = 2  # a holiday four weeks before day 35 ...
    day_types[35] = 2  # ... and day 35 is one too
    reference = seasonal_reference(values, day_types)
    assert np.isnan(reference[:7]).all()
    assert reference[7] == 0  # only one week behind: day 0
    assert reference[20] == 9.5  # median of days 13, 6
    assert reference[30] == 16  # median of days 23, 16, 9 (day 2 is a fourth: unused)
    assert reference[28] == 7  # day 21 (a holiday) skipped: median of 14, 7, 0
    assert reference[35] == 21  # holiday: the only holiday among 28, 21, 14, 7
    no_match = day_types.copy()
    no_match[21] = 0
    assert seasonal_reference(values, no_match)[35] == 21  # no holiday behind: median of 28, 21, 14


def test_a_worked_sunday_is_compared_with_the_workdays_of_the_same_weeks():
    values = np.arange(36, dtype=float)
    day_types = (np.arange(36) % 7 >= 5).astype(int)  # day 0 a Monday; days 5, 6, 12, 13, ... a weekend
    day_types[[34, 35]] = [0, 1]  # a Sunday worked instead of a day off, the Monday after it rested
    day_types[28] = 2  # a holiday: with its weekday, as ever
    unlike = unlike_weekday(day_types)
    reference = seasonal_reference(values, day_types, unlike)
    assert reference[34] == 24  # the latest 3 workdays at least a week back: 25, 24, 23
    assert reference[35] == 26  # the latest 3 weekend days at least a week back: 27, 26, 20
    assert reference[27] == 13  # a normal Sunday: the Sundays 20, 13, 6
    # Compared with their weekday (without the mask): the Sundays 27 20 13; no Monday rested, so 28 21 14.
    assert seasonal_reference(values, day_types)[[34, 35]].tolist() == [20, 21]


def test_weekly_new_cases_from_cumulative_and_daily_counts():
    cumulative = np.array([5, 5, 7, 10, 10, 10, 11, 20, 30], dtype=float)
    np.testing.assert_array_equal(
        weekly_new(cumulative, cumulative=True), [0, 0, 2, 5, 5, 5, 6, 15, 25]
    )  # daily 0 0 2 3 0 0 1 9 10
    np.testing.assert_array_equal(weekly_new(np.array([1.0, 2, 3]), cumulative=False), [1, 3, 6])


def test_one_hot_day_types():
    np.testing.assert_array_equal(one_hot(np.array([0, 2, 1]), [0, 1, 2]), [[1, 0, 0], [0, 0, 1], [0, 1, 0]])


def test_notebook_encoder_scales_on_training_rows_only_and_decodes_back():
    train, everything = _history(23), _history(30)
    everything.loc[25, "travellers"] = 1_000_000  # a later spike must not move the scale
    encoder = fit_encoder("notebook", train, ["cases"], ["cases"], [0, 1, 2])
    assert encoder.scaler.data_min_[0] == 100 and encoder.scaler.data_max_[0] == 100 + 22 * 10
    encoded = encoder.encode(everything)
    np.testing.assert_allclose(encoded.past[22], [1.0, 1.0, 0.5])  # day type 22 % 3 = 1 of 0..2
    assert encoded.future.shape == (30, 0)
    np.testing.assert_allclose(
        encoder.decode(encoded.target[:, None], encoded.reference[:, None])[:, 0], everything["travellers"]
    )


def test_seasonal_encoder_targets_the_log_residual_and_decodes_back():
    history = _history(30)
    encoder = fit_encoder("seasonal", history, ["cases"], ["cases"], [0, 1, 2])
    encoded = encoder.encode(history)
    log_t = np.log(history["travellers"].to_numpy(float))
    # Day 14 has type 2; days 7 and 0 have types 1 and 0: no match, so the median of both.
    assert encoded.reference[14] == pytest.approx(np.median(log_t[[7, 0]]))
    assert encoded.target[14] == pytest.approx(log_t[14] - encoded.reference[14])
    assert encoded.past[14, 1] == pytest.approx(log_t[14] - log_t[7])  # the change on the week
    np.testing.assert_array_equal(encoded.future[14], [0, 0, 1])
    assert encoded.past.shape == (30, 2 + 2 + 3)  # residual, weekly change, log travellers, log cases, 3 day types
    np.testing.assert_allclose(
        encoder.decode(encoded.target[7:, None], encoded.reference[7:, None])[:, 0], history["travellers"][7:]
    )


def _weekly_history(days: int, shift_from: int | None = None):
    """A weekly pattern (weekends at 40%) on a wandering level, everything ×3 from `shift_from` on."""
    history = _history(days)
    weekday = history["date"].dt.dayofweek.to_numpy()
    level = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.05, days)))
    travellers = 1000.0 * np.where(weekday >= 5, 0.4, 1.0) * level
    if shift_from is not None:
        travellers[shift_from:] *= 3
    history["travellers"] = travellers.round().astype(np.int64)
    history["day_type"] = (weekday >= 5).astype(np.int64)
    return history


def test_ets_reference_is_fitted_before_the_validation_days_and_uses_only_earlier_days():
    history = _weekly_history(70)
    encoder = fit_encoder("seasonal", history, ["cases"], ["cases"], [0, 1], reference="ets", reference_days=56)
    changed = history.copy()
    changed.loc[56:, "travellers"] *= 5  # the validation days and later: neither the fit nor an earlier reference moves
    refitted = fit_encoder("seasonal", changed, ["cases"], ["cases"], [0, 1], reference="ets", reference_days=56)
    same = encoder.encode(history).reference
    np.testing.assert_allclose(refitted.encode(changed).reference[:57], same[:57])
    np.testing.assert_allclose(encoder.encode(changed).reference[:57], same[:57])
    assert (
        encoder.encode(changed).reference[57] > same[57] + 0.5
    )  # day 57 follows day 56's jump (the level wanders: ETS adapts fast)
    encoded = encoder.encode(history)
    np.testing.assert_allclose(encoder.decode(encoded.target[:, None], encoded.reference[:, None])[:, 0], history["travellers"])


def test_ets_reference_follows_a_level_shift_within_days_where_the_median_lags_weeks():
    history = _weekly_history(98, shift_from=84)
    codes = ["cases"], ["cases"], [0, 1]
    ets = fit_encoder("seasonal", history, *codes, reference="ets", reference_days=84).encode(history)
    median = fit_encoder("seasonal", history, *codes).encode(history)
    log_t = np.log(history["travellers"].to_numpy(float))
    # Two days after the shift: ETS's forecast is already within 30% of the new level, the median still at the old one.
    assert abs(ets.reference[86] - log_t[86]) < np.log(1.3)
    assert abs(median.reference[86] - log_t[86]) > np.log(2.5)
