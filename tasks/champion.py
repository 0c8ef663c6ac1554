"""Whether a freshly trained challenger takes the `champion` alias."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class UnseenDays:
    """The challenger's backtest days after the champion's fit ended: the days neither model was fitted on.

    On them the challenger's backtest forecasts (fitted before its backtest began) and the champion's
    one-step forecasts are compared; a champion is never judged on days it was trained on.
    """

    champion_version: str
    champion_fitted_through: str
    days: int
    challenger_mae: float = math.nan
    champion_mae: float = math.nan
    seasonal_naive_mae: float = math.nan


@dataclass(frozen=True)
class Decision:
    """The outcome and its figures, as tagged on both model versions."""

    promote: bool
    reason: str
    challenger_mae: float
    champion_mae: float | None  # on the unseen days
    seasonal_naive_mae: float
    peer_instead: str | None = None  # the peer that beat the challenger on its own backtest days
    unseen_days: int | None = None  # days the champion was compared on (None: no champion scored)

    def tags(self) -> dict[str, str]:
        """MLflow tags recording the decision on a model version."""
        tags = {
            "decision": "promoted" if self.promote else "not promoted",
            "decision_reason": self.reason,
            "challenger_mae": f"{self.challenger_mae:.1f}",
            "seasonal_naive_mae": f"{self.seasonal_naive_mae:.1f}",
        }
        tags |= {"best_peer": self.peer_instead} if self.peer_instead else {}
        tags |= {"unseen_days": str(self.unseen_days)} if self.unseen_days is not None else {}
        return tags | ({"champion_mae": f"{self.champion_mae:.1f}"} if self.champion_mae is not None else {})


def decide(
    challenger_mae: float,
    seasonal_naive_mae: float,
    champion: UnseenDays | None,
    champion_version: str | None,
    max_baseline_ratio: float,
    best_peer: tuple[str, float] | None = None,
    max_peer_ratio: float = 1.0,
    min_unseen_days: int = 7,
    champion_drift: str | None = None,
) -> Decision:
    """Promote only a sane challenger that beats the best peer on its backtest, and the champion and seasonal
    naive on the backtest days the champion was not fitted on (at least `min_unseen_days` of them).

    The first model becomes champion unless it diverged (non-finite error), is worse than
    the seasonal-naive forecast by more than `max_baseline_ratio`, or is not below `max_peer_ratio`
    times `best_peer` (name, MAE: the best forecaster it was compared with on its backtest days).
    With fewer unseen days the champion stays: a challenger is promoted at the earliest
    `min_unseen_days` days after the champion's data ended, unless the champion drifts
    (`champion_drift`: why its live error says it went stale), when a challenger that passes
    the floors replaces it.
    """

    # A challenger that loses to a peer names it, whatever refuses it: that peer may be promoted instead.
    loses_to = best_peer[0] if best_peer is not None and not challenger_mae < max_peer_ratio * best_peer[1] else None
    unseen = champion.days if champion is not None else None
    champion_mae = champion.champion_mae if champion is not None and champion.days >= min_unseen_days else None

    def decision(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, challenger_mae, champion_mae, seasonal_naive_mae, None if promote else loses_to, unseen)

    figures = f"MAE {challenger_mae:,.0f} vs seasonal naive {seasonal_naive_mae:,.0f}"
    if not math.isfinite(challenger_mae):
        return decision(False, f"diverged: the challenger's test MAE is {challenger_mae}")
    if challenger_mae > max_baseline_ratio * seasonal_naive_mae:
        return decision(False, f"far worse than seasonal naive ({figures}, limit {max_baseline_ratio}x)")
    if loses_to is not None:
        limit = f", limit {max_peer_ratio}x" if max_peer_ratio != 1 else ""
        return decision(
            False, f"loses to {loses_to} on its backtest days (MAE {challenger_mae:,.0f} vs {best_peer[1]:,.0f}{limit})"
        )
    if champion is None and champion_version is None:
        return decision(True, f"first model: no champion yet ({figures})")
    if champion is None:  # never replace a champion unseen: a lost artifact must not look like a win
        return decision(
            False,
            f"champion v{champion_version} could not be loaded or scored (the run summary says why): it stays champion "
            "until its artifacts are restored or the alias is moved by hand",
        )
    version, since = champion.champion_version, champion.champion_fitted_through
    if champion_drift:
        return decision(
            True, f"champion v{version} drifts ({champion_drift}): replaced by a challenger trained on the days since"
        )
    if champion.days < min_unseen_days:
        return decision(
            False,
            f"{champion.days} backtest day(s) after champion v{version}'s data ({since}), {min_unseen_days} needed "
            "(retrain.min_unseen_days): it stays champion until it can be compared on days neither model was fitted on",
        )
    on = f"on the {champion.days} days after {since}"
    versus = f"MAE {champion.challenger_mae:,.0f} vs champion v{version} {champion.champion_mae:,.0f} {on}"
    if not champion.challenger_mae < champion.champion_mae:
        return decision(False, f"does not beat the champion ({versus})")
    if not champion.challenger_mae < champion.seasonal_naive_mae:
        return decision(
            False,
            f"beats the champion but not seasonal naive (MAE {champion.challenger_mae:,.0f} vs "
            f"{champion.seasonal_naive_mae:,.0f} {on})",
        )
    return decision(True, f"beats the champion ({versus}) and seasonal naive ({champion.seasonal_naive_mae:,.0f})")
