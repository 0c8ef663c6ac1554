"""How validated days become model inputs and targets, and forecasts become travellers again.

Two encodings of the LSTM's inputs, chosen by `model.encoding`:

- `notebook`: the recipe's [travellers, case columns, day type] MinMax-scaled, the target
  is scaled travellers. No input about the day being forecast.
- `seasonal`: the target is the log of travellers minus a robust same-weekday reference
  (the median of the log of up to three of the last four same weekdays with the target's
  day type), so the network learns corrections to "a normal such day" instead of levels.
  Inputs per past day: that residual, the change on the week, log travellers, log of the
  week's new cases per case column (cumulative columns are differenced first) and one-hot
  day types; the day type of each day forecast is a known-future input. Ratios are
  scale-free, which is what lets the same defaults work on another city's data.
  With `reference = "ets"` the reference is instead AutoETS's one-step forecast of the day
  (fitted on training rows before the validation days, then filtered through later days
  with its parameters fixed), as in the M4 winner's hybrid: the network corrects the
  best statistical peer's forecast, and a level shift moves the reference in a day, not
  in three weeks.

An encoder is fitted on training rows only (its scaler); applying it to later rows uses
each row's own past, never the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from schemas.daily import DAY_TYPE, TARGET
from tasks.calendar import unlike_weekday
from tasks.evaluation import SEASON

if TYPE_CHECKING:  # scikit-learn takes a second to import; a run with no new data never needs it
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

REFERENCE_WEEKS = 4  # same weekdays looked at for the reference
REFERENCE_DAYS = 3  # of which at most this many, with the target's day type, are used


@dataclass(frozen=True)
class Encoded:
    """The history as model arrays, one row per day.

    past [days, features]: what each day contributes to windows ending on or after it.
    future [days, k]: what is known in advance about each day (empty for `notebook`).
    target [days]: the training target of each day (NaN where it cannot be computed).
    reference [days]: the value a zero target decodes to, in the target's units.
    """

    past: np.ndarray
    future: np.ndarray
    target: np.ndarray
    reference: np.ndarray


def same_weekdays_before(day: int) -> list[int]:
    """The rows of the last REFERENCE_WEEKS same weekdays before row `day`, latest first (those within the data)."""
    return [day - SEASON * k for k in range(1, REFERENCE_WEEKS + 1) if day - SEASON * k >= 0]


def seasonal_reference(
    log_values: np.ndarray, day_types: np.ndarray, unlike: np.ndarray | None = None, days: np.ndarray | None = None
) -> np.ndarray:
    """Per day: the median log value of up to 3 of the last 4 same weekdays with its day type.

    Falls back to the three latest same weekdays when none has the day's type (a holiday);
    NaN for the first week. A day of `unlike` (unlike its weekday: a Sunday worked instead of
    a day off, tasks/calendar.unlike_weekday) is compared with up to 3 of the latest days of
    its type in the same weeks instead: a workday with workdays. Uses only days at least a
    week back. With `days`, only those days are computed (NaN elsewhere).
    """
    n = len(log_values)
    reference = np.full(n, np.nan)
    for day in range(SEASON, n) if days is None else (day for day in days if day >= SEASON):
        earlier = same_weekdays_before(day)
        if unlike is not None and unlike[day]:
            weeks = range(day - SEASON, max(day - SEASON * REFERENCE_WEEKS, 0) - 1, -1)
            same_type = [j for j in weeks if day_types[j] == day_types[day]][:REFERENCE_DAYS]
        else:
            same_type = [j for j in earlier if day_types[j] == day_types[day]][:REFERENCE_DAYS]
        reference[day] = np.median(log_values[same_type or earlier[:REFERENCE_DAYS]])
    return reference


def ets_reference(fitted_ets, travellers: np.ndarray) -> np.ndarray:
    """Per day: the log of a fitted ETS model's forecast of it from the days before (its parameters fixed)."""
    one_step = fitted_ets.forward(y=travellers, h=1, fitted=True)["fitted"]
    return np.log(np.maximum(np.asarray(one_step, dtype=float), 1.0))


def weekly_new(values: np.ndarray, cumulative: bool) -> np.ndarray:
    """The last seven days' new counts (from a cumulative series: its differences)."""
    daily = np.diff(values, prepend=values[:1]) if cumulative else values
    return pd.Series(np.maximum(daily, 0)).rolling(SEASON, min_periods=1).sum().to_numpy()


def one_hot(day_types: np.ndarray, codes: list[int]) -> np.ndarray:
    """[days, len(codes)] indicators of each day's type."""
    return (np.asarray(day_types)[:, None] == np.asarray(codes)[None, :]).astype(float)


@dataclass(frozen=True)
class FeatureEncoder:
    """A fitted encoding: which columns, how they are scaled, how outputs map back."""

    kind: str
    case_columns: list[str]
    cumulative_columns: list[str]
    day_type_codes: list[int]
    scaler: MinMaxScaler | StandardScaler
    reference_model: object | None = None  # a fitted statsforecast AutoETS when the reference is "ets"
    unlike_weekdays: bool = False  # a day unlike its weekday compared with days of its type (an encoder saved before: not)

    def encode(self, history: pd.DataFrame) -> Encoded:
        """Model arrays for every day of `history` (validated, consecutive days)."""
        raw = _raw_features(history, self)
        if self.kind == "notebook":
            past = self.scaler.transform(raw)
            empty = np.zeros((len(history), 0))
            return Encoded(past=past, future=empty, target=past[:, 0], reference=np.zeros(len(history)))
        log_travellers, day_types = raw[:, 0], history[DAY_TYPE].to_numpy()
        unlike = unlike_weekday(day_types) if self.unlike_weekdays else None
        reference = (
            seasonal_reference(log_travellers, day_types, unlike)
            if self.reference_model is None
            else ets_reference(self.reference_model, history[TARGET].to_numpy(dtype=float))
        )
        weekly_change = np.full(len(history), np.nan)
        weekly_change[SEASON:] = log_travellers[SEASON:] - log_travellers[:-SEASON]
        residual = log_travellers - reference
        past = np.column_stack([residual, weekly_change, self.scaler.transform(raw), one_hot(day_types, self.day_type_codes)])
        return Encoded(past=past, future=one_hot(day_types, self.day_type_codes), target=residual, reference=reference)

    def decode(self, outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Travellers from model outputs [samples, horizon] and the targets' references."""
        if self.kind == "notebook":
            low, span = self.scaler.data_min_[0], self.scaler.data_range_[0]
            return np.asarray(outputs, dtype=float) * span + low
        return np.exp(np.asarray(reference, dtype=float) + np.asarray(outputs, dtype=float))


def _raw_features(history: pd.DataFrame, encoder: FeatureEncoder) -> np.ndarray:
    """Unscaled columns: notebook [travellers, cases, day type]; seasonal [log travellers, log weekly new cases]."""
    if encoder.kind == "notebook":
        columns = list(dict.fromkeys([TARGET, *encoder.case_columns, DAY_TYPE]))
        return history[columns].to_numpy(dtype=float)
    cases = [
        np.log1p(weekly_new(history[c].to_numpy(dtype=float), c in encoder.cumulative_columns)) for c in encoder.case_columns
    ]
    return np.column_stack([np.log(np.maximum(history[TARGET].to_numpy(dtype=float), 1.0)), *cases])


def fit_encoder(
    kind: str,
    train_history: pd.DataFrame,
    case_columns: list[str],
    cumulative_columns: list[str],
    day_type_codes: list[int],
    reference: str = "median",
    reference_days: int | None = None,
    unlike_weekdays: bool = False,
) -> FeatureEncoder:
    """Fit the scaler on the training rows alone: MinMax(0, 1) for notebook, standard for seasonal.

    With `reference="ets"` (seasonal only) AutoETS is fitted on the first `reference_days`
    training rows (all when None): the caller keeps its validation days out of it.
    """
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    unfitted = FeatureEncoder(kind, list(case_columns), list(cumulative_columns), list(day_type_codes), scaler=None)
    raw = _raw_features(train_history, unfitted)
    if kind == "seasonal":
        raw = raw[SEASON:]  # the first week feeds no sample (it has no reference)
    scaler = MinMaxScaler(feature_range=(0, 1)) if kind == "notebook" else StandardScaler()
    reference_model = None
    if kind == "seasonal" and reference == "ets":
        from tasks.forecasters import AutoEts, fitted_statsforecast, series_key

        # the peer's fit, cached
        reference_model = fitted_statsforecast(AutoEts.MODELS[AutoEts.kind], series_key(train_history, reference_days))
    return FeatureEncoder(
        kind,
        list(case_columns),
        list(cumulative_columns),
        list(day_type_codes),
        scaler.fit(raw),
        reference_model,
        unlike_weekdays and kind == "seasonal",
    )
