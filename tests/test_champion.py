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


def test_an_unscorable_champion_is_kept_and_said_so():
    decision = decide(90.0, 100.0, None, "3", max_baseline_ratio=1.5)
    assert not decision.promote and decision.reason.startswith("champion v3 could not be loaded or scored")


@pytest.mark.parametrize(
    ("challenger", "champion", "reason"),
    [
        (96.0, None, "loses to auto_ets on its backtest days (MAE 96 vs 95)"),  # even as the first model
        (95.0, 120.0, "loses to auto_ets on its backtest days (MAE 95 vs 95)"),  # a tie is a loss
        (160.0, None, "far worse than seasonal naive"),  # refused for that, still names the peer that beat it
    ],
)
def test_a_challenger_that_loses_to_the_best_peer_is_refused_and_names_it(challenger, champion, reason):
    decision = decide(
        challenger, 100.0, champion, "3" if champion else None, max_baseline_ratio=1.5, best_peer=("auto_ets", 95.0)
    )
    assert not decision.promote and reason in decision.reason
    assert decision.peer_instead == "auto_ets" and decision.tags()["best_peer"] == "auto_ets"


def test_a_challenger_that_beats_the_best_peer_goes_on_to_the_champion_rule():
    decision = decide(90.0, 100.0, 92.0, "3", max_baseline_ratio=1.5, best_peer=("auto_ets", 95.0))
    assert decision.promote and decision.peer_instead is None and "beats the champion" in decision.reason


def test_the_peer_limit_can_be_loosened_like_the_baseline_one():
    decision = decide(120.0, 130.0, None, None, max_baseline_ratio=1.5, best_peer=("auto_ets", 100.0), max_peer_ratio=1.25)
    assert decision.promote and "first model" in decision.reason
    refused = decide(130.0, 130.0, None, None, max_baseline_ratio=1.5, best_peer=("auto_ets", 100.0), max_peer_ratio=1.25)
    assert refused.reason == "loses to auto_ets on its backtest days (MAE 130 vs 100, limit 1.25x)"


def test_the_backtest_compares_with_the_best_peer_or_says_there_is_none():
    from tasks.train_tasks import Evaluation

    maes = {"lstm": 80.0, "seasonal_naive": 100.0, "auto_ets": 90.0, "naive": float("nan")}
    evaluation = Evaluation("lstm", {k: {"mae": v} for k, v in maes.items()}, {}, {}, {}, "2024-11-01", "2024-11-14")
    assert evaluation.best_peer == "auto_ets"
    assert evaluation.comparison() == "0.889x the best peer's (auto_ets), 0.800x seasonal naive's"
    alone = Evaluation("seasonal_naive", {"seasonal_naive": {"mae": 100.0}}, {}, {}, {}, "2024-11-01", "2024-11-14")
    assert alone.best_peer is None and alone.ratios() == {"mae_ratio_to_seasonal_naive": 1.0}
    assert alone.comparison() == "1.000x seasonal naive's"
