"""Choosing the default model's settings without looking at any test day.

Each backtest protocol is moved back by its own test days: its validation window ends
where its test days begin, and is the same protocol in every other way (as many days
forecast, the same refits). With more origins, it is also moved back by twice its test days
and so on: windows that end where the next one begins, so a candidate is judged on more than
one stretch of each series. The candidates are scored there, on every series of the
development set, against the best peer on the same days; the candidate with the lowest
geometric mean ratio is the default. Test days are scored only after the choice.

The candidates are ways to weight the LSTM's members (tasks/combination.py), all read off
the same fitted networks and peers: the networks alone, or combined by one of the rules;
`<rule> without <member>` weights every member but that one (weight 0), so whether a member
earns its place is judged on the same fits with and without it; `<candidate> rolling` weights each
day after a fit's days on the members' errors on the days before it (`model.rolling_weights`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import pandas as pd

from schemas.daily import DATE
from tasks.backtest import Fit, warm_refits
from tasks.combination import combination_weights, without_holidays
from tasks.config import BacktestConfig, CombinationRule, DataConfig, ModelConfig
from tasks.lstm import NETWORKS, LstmForecaster

NETWORKS_ALONE = "networks"  # the candidate that gives the networks all the weight
CANDIDATES: list[str] = [NETWORKS_ALONE, "inverse_mae", "inverse_mse", "equal", "trimmed", "best"]
WITHOUT = " without "
ROLLING = " rolling"


def without(members: Iterable[str], candidates: Iterable[str] = CANDIDATES) -> list[str]:
    """The candidates, then each rule again with each of `members` left out in turn (`trimmed without naive`)."""
    rules = [c for c in candidates if c != NETWORKS_ALONE]
    return [*candidates, *(f"{rule}{WITHOUT}{member}" for member in members for rule in rules)]


def rolling(candidates: Iterable[str]) -> list[str]:
    """The candidates, then each rule again with `model.rolling_weights` (`inverse_mse rolling`)."""
    candidates = list(candidates)
    return [*candidates, *(f"{c}{ROLLING}" for c in candidates if c != NETWORKS_ALONE)]


def validation_protocol(protocol: BacktestConfig, n_days: int, origin: int = 1) -> BacktestConfig:
    """The protocol moved back by `origin` times its test days: it uses the days before them only."""
    used = min(protocol.first_days_only or n_days, n_days)  # the notebook's 185 on a shorter series: all its days
    first_days = used - origin * protocol.test_days
    if first_days <= protocol.test_days:  # model_copy does not validate: a slice [:-20] would pass unnoticed
        raise ValueError(
            f"validation origin {origin}: {used} days moved back by {origin} x {protocol.test_days} test days "
            f"leave {first_days}, not more than the {protocol.test_days} it forecasts"
        )
    return protocol.model_copy(update={"first_days_only": first_days})


def reweighted(forecaster: LstmForecaster, candidate: str) -> LstmForecaster:
    """A copy of a fitted combined forecaster with the candidate's weights (from the same validation errors)."""
    errors = forecaster.validation_errors
    other = copy.copy(forecaster)
    if candidate == NETWORKS_ALONE:
        other.weights = {name: float(name == NETWORKS) for name in errors}
        other.model = forecaster.model.model_copy(update={"rolling_weights": False})
        return other
    rule, _, left_out = candidate.removesuffix(ROLLING).partition(WITHOUT)
    if left_out and left_out not in errors:
        raise ValueError(f"candidate {candidate!r}: {left_out!r} is not a member ({', '.join(errors)})")
    kept = {name: e for name, e in errors.items() if name != left_out}  # out of every day's weights
    weighted = combination_weights(without_holidays(kept, forecaster.validation_holidays), _rule(rule))
    other.weights = {name: weighted.get(name, 0.0) for name in errors}
    other.validation_errors = kept
    other.model = forecaster.model.model_copy(update={"rolling_weights": candidate.endswith(ROLLING), "combination": rule})
    return other


def candidate_of(model: ModelConfig) -> str:
    """The candidate that is this model's own weighting (`inverse_mse rolling` for the default)."""
    return f"{model.combination}{ROLLING if model.rolling_weights else ''}"


def candidate_fits(data: DataConfig, model: ModelConfig, candidates: Iterable[str] = CANDIDATES) -> dict[str, Fit]:
    """One backtest fit per candidate, all sharing one fit of the networks and peers per fold."""
    fitted: dict[pd.Timestamp, LstmForecaster] = {}
    fit = warm_refits(lambda train, start: LstmForecaster(data, model).warm_from(start).fit(train), model.warm_start_days)

    def fit_once(train: pd.DataFrame) -> LstmForecaster:
        last = train[DATE].iloc[-1]
        if last not in fitted:
            fitted.clear()  # folds come in order: keep the current one only
            fitted[last] = fit(train)
        return fitted[last]

    return {f"lstm {c}": (lambda train, c=c: reweighted(fit_once(train), c)) for c in candidates}


def ratios_to_best_peer(maes: dict[str, float], peers: list[str]) -> dict[str, float]:
    """Each candidate's MAE (named `lstm <candidate>`) over the lowest MAE among `peers`, on the same days."""
    best = min(maes[peer] for peer in peers)
    return {name.removeprefix("lstm "): mae / best for name, mae in maes.items() if name.startswith("lstm ")}


def choose(ratios: pd.DataFrame) -> tuple[str, pd.Series]:
    """The candidate with the lowest geometric mean of its MAE / best peer MAE over every row.

    `ratios` has columns candidate, ratio (one row per series, protocol and seed). Ties go to
    the candidate listed first. Returns the choice and every candidate's geometric mean.
    """
    means = ratios.groupby("candidate", sort=False)["ratio"].apply(lambda r: math.exp(r.map(math.log).mean()))
    return str(means.idxmin()), means


def _rule(candidate: str) -> CombinationRule:
    if candidate not in CANDIDATES:
        raise ValueError(f"unknown candidate {candidate!r}; choose from {CANDIDATES}")
    return candidate  # type: ignore[return-value]
