"""Whether a freshly trained challenger takes the `champion` alias."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The outcome and its figures, as tagged on both model versions."""

    promote: bool
    reason: str
    challenger_mae: float
    champion_mae: float | None
    seasonal_naive_mae: float
    peer_instead: str | None = None  # the peer that beat the challenger on its own backtest days

    def tags(self) -> dict[str, str]:
        """MLflow tags recording the decision on a model version."""
        tags = {
            "decision": "promoted" if self.promote else "not promoted",
            "decision_reason": self.reason,
            "challenger_mae": f"{self.challenger_mae:.1f}",
            "seasonal_naive_mae": f"{self.seasonal_naive_mae:.1f}",
        }
        tags |= {"best_peer": self.peer_instead} if self.peer_instead else {}
        return tags | ({"champion_mae": f"{self.champion_mae:.1f}"} if self.champion_mae is not None else {})


def decide(
    challenger_mae: float,
    seasonal_naive_mae: float,
    champion_mae: float | None,
    champion_version: str | None,
    max_baseline_ratio: float,
    best_peer: tuple[str, float] | None = None,
    max_peer_ratio: float = 1.0,
) -> Decision:
    """Promote only a sane challenger that beats the best peer, the champion and seasonal naive on one window.

    The first model becomes champion unless it diverged (non-finite error), is worse than
    the seasonal-naive forecast by more than `max_baseline_ratio`, or is not below `max_peer_ratio`
    times `best_peer` (name, MAE: the best forecaster it was compared with on its backtest days).
    """

    # A challenger that loses to a peer names it, whatever refuses it: that peer may be promoted instead.
    loses_to = best_peer[0] if best_peer is not None and not challenger_mae < max_peer_ratio * best_peer[1] else None

    def decision(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, challenger_mae, champion_mae, seasonal_naive_mae, None if promote else loses_to)

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
    if champion_mae is None and champion_version is None:
        return decision(True, f"first model: no champion yet ({figures})")
    if champion_mae is None:  # never replace a champion unseen: a lost artifact must not look like a win
        return decision(
            False,
            f"champion v{champion_version} could not be loaded or scored (the run summary says why): it stays champion "
            "until its artifacts are restored or the alias is moved by hand",
        )
    versus = f"MAE {challenger_mae:,.0f} vs champion v{champion_version} {champion_mae:,.0f}"
    if not challenger_mae < champion_mae:
        return decision(False, f"does not beat the champion ({versus})")
    if not challenger_mae < seasonal_naive_mae:
        return decision(False, f"beats the champion but not seasonal naive ({figures})")
    return decision(True, f"beats the champion ({versus}) and seasonal naive ({seasonal_naive_mae:,.0f})")
