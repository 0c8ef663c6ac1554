"""The champion rule (pure logic)."""

import math

import pytest

from tasks.champion import decide


@pytest.mark.parametrize(
    ("challenger", "naive", "champion", "promote", "reason"),
    [
        (90.0, 100.0, None, True, "first model: no champion yet"),
        (140.0, 100.0, None, True, "first model"),  # worse than naive, but within 1.5x: becomes the first champion
        (160.0, 100.0, None, False, "far worse than seasonal naive"),
        (math.nan, 100.0, None, False, "diverged"),
        (80.0, 100.0, 85.0, True, "beats the champion (MAE 80 vs champion v3 85) and seasonal naive (100)"),
        (86.0, 100.0, 85.0, False, "does not beat the champion (MAE 86 vs champion v3 85)"),
        (105.0, 100.0, 110.0, False, "beats the champion but not seasonal naive"),
    ],
)
def test_champion_rule(challenger, naive, champion, promote, reason):
    decision = decide(challenger, naive, champion, "3" if champion is not None else None, max_baseline_ratio=1.5)
    assert decision.promote is promote
    assert reason in decision.reason
    assert decision.tags()["decision"] == ("promoted" if promote else "not promoted")


def test_an_unscorable_champion_is_said_so():
    decision = decide(90.0, 100.0, None, "3", max_baseline_ratio=1.5)
    assert decision.promote and decision.reason.startswith("champion v3 could not be scored")
