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

    def tags(self) -> dict[str, str]:
        """MLflow tags recording the decision on a model version."""
        tags = {
            "decision": "promoted" if self.promote else "not promoted",
            "decision_reason": self.reason,
            "challenger_mae": f"{self.challenger_mae:.1f}",
            "seasonal_naive_mae": f"{self.seasonal_naive_mae:.1f}",
        }
        return tags | ({"champion_mae": f"{self.champion_mae:.1f}"} if self.champion_mae is not None else {})


def decide(
    challenger_mae: float,
    seasonal_naive_mae: float,
    champion_mae: float | None,
    champion_version: str | None,
    max_baseline_ratio: float,
) -> Decision:
    """Promote only a sane challenger that beats both the champion and seasonal naive on one window.

    The first model becomes champion unless it diverged (non-finite error) or is worse than
    the seasonal-naive forecast by more than `max_baseline_ratio`.
    """

    def decision(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, challenger_mae, champion_mae, seasonal_naive_mae)

    figures = f"MAE {challenger_mae:,.0f} vs seasonal naive {seasonal_naive_mae:,.0f}"
    if not math.isfinite(challenger_mae):
        return decision(False, f"diverged: the challenger's test MAE is {challenger_mae}")
    if challenger_mae > max_baseline_ratio * seasonal_naive_mae:
        return decision(False, f"far worse than seasonal naive ({figures}, limit {max_baseline_ratio}x)")
    if champion_mae is None and champion_version is None:
        return decision(True, f"first model: no champion yet ({figures})")
    if champion_mae is None:
        return decision(True, f"champion v{champion_version} could not be scored on this data ({figures})")
    versus = f"MAE {challenger_mae:,.0f} vs champion v{champion_version} {champion_mae:,.0f}"
    if not challenger_mae < champion_mae:
        return decision(False, f"does not beat the champion ({versus})")
    if not challenger_mae < seasonal_naive_mae:
        return decision(False, f"beats the champion but not seasonal naive ({figures})")
    return decision(True, f"beats the champion ({versus}) and seasonal naive ({seasonal_naive_mae:,.0f})")
