"""Combining the LSTM's forecast with the statistical peers', weighted on validation days only.

Forecast combination is the most reliable accuracy lever in the forecasting literature (the
M4 and M5 winners were combinations): members that err differently cancel part of each
other's error, and a member that does badly on a city gets little weight there instead of
being the whole forecast. The weights come from each member's errors on the fit's own
validation days (the last `weighting_days` of the `validation_days` training days, which no
member was fitted on and the networks did not stop early on), so they are chosen per city
and per fit, never from test days.
"""

from __future__ import annotations

import numpy as np

from tasks.config import CombinationRule


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
