"""The champion rule (pure logic)."""

import math

import pytest

from tasks.champion import UnseenDays, decide


def on_unseen_days(challenger: float, champion: float, naive: float = 100.0, days: int = 7) -> UnseenDays:
    return UnseenDays("3", "2024-11-07", days, challenger, champion, naive)


@pytest.mark.parametrize(
    ("challenger", "naive", "champion", "promote", "reason"),
    [
        (90.0, 100.0, None, True, "first model: no champion yet"),
        (140.0, 100.0, None, True, "first model"),  # worse than naive, but within 1.5x: becomes the first champion
        (160.0, 100.0, None, False, "far worse than seasonal naive"),
        (math.nan, 100.0, None, False, "diverged"),
        (
            80.0,
            100.0,
            on_unseen_days(80.0, 85.0),
            True,
            "beats the champion (MAE 80 vs champion v3 85 on the 7 days after 2024-11-07) and seasonal naive (100)",
        ),
        (86.0, 100.0, on_unseen_days(86.0, 85.0), False, "does not beat the champion (MAE 86 vs champion v3 85 on the 7 days"),
        (105.0, 100.0, on_unseen_days(105.0, 110.0), False, "beats the champion but not seasonal naive (MAE 105 vs 100 on"),
    ],
)
def test_champion_rule(challenger, naive, champion, promote, reason):
    decision = decide(challenger, naive, champion, "3" if champion is not None else None, max_baseline_ratio=1.5)
    assert decision.promote is promote
    assert reason in decision.reason
    assert decision.tags()["decision"] == ("promoted" if promote else "not promoted")


def test_the_champion_is_judged_on_the_days_after_its_data_not_on_the_challengers_whole_backtest():
    # The challenger loses on its whole backtest (120 vs seasonal naive 100 is within the 1.5x floor) but wins on the
    # 7 days neither model saw: those decide.
    decision = decide(120.0, 100.0, on_unseen_days(70.0, 90.0, naive=95.0), "3", max_baseline_ratio=1.5)
    assert decision.promote and decision.champion_mae == 90.0 and decision.tags()["unseen_days"] == "7"
    assert (
        decision.reason == "beats the champion (MAE 70 vs champion v3 90 on the 7 days after 2024-11-07) and seasonal naive (95)"
    )


@pytest.mark.parametrize("days", [0, 1, 6])
def test_with_fewer_unseen_days_than_the_minimum_the_champion_stays_whatever_the_figures(days):
    decision = decide(50.0, 100.0, on_unseen_days(50.0, 90.0, days=days), "3", max_baseline_ratio=1.5, min_unseen_days=7)
    assert not decision.promote and decision.champion_mae is None
    assert decision.reason == (
        f"{days} backtest day(s) after champion v3's data (2024-11-07), 7 needed (retrain.min_unseen_days): "
        "it stays champion until it can be compared on days neither model was fitted on"
    )
    assert decide(50.0, 100.0, on_unseen_days(50.0, 90.0, days=days), "3", 1.5, min_unseen_days=max(days, 1)).promote is (
        days > 0
    )


def test_an_unscorable_champion_is_kept_and_said_so():
    decision = decide(90.0, 100.0, None, "3", max_baseline_ratio=1.5)
    assert not decision.promote and decision.reason.startswith("champion v3 could not be loaded or scored")


@pytest.mark.parametrize(
    ("challenger", "champion", "reason"),
    [
        (96.0, None, "loses to auto_ets on its backtest days (MAE 96 vs 95)"),  # even as the first model
        (95.0, on_unseen_days(95.0, 120.0), "loses to auto_ets on its backtest days (MAE 95 vs 95)"),  # a tie is a loss
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
    decision = decide(90.0, 100.0, on_unseen_days(90.0, 92.0), "3", max_baseline_ratio=1.5, best_peer=("auto_ets", 95.0))
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


def test_a_drifting_champion_is_replaced_by_a_sane_challenger_without_waiting_for_unseen_days():
    drift = "live MAE of the last 28 days 160 is 1.60x its backtest MAE 100 (limit 1.5x)"
    replaced = decide(90.0, 100.0, on_unseen_days(90.0, 80.0, days=1), "3", 1.5, champion_drift=drift)
    assert (
        replaced.promote
        and replaced.reason == f"champion v3 drifts ({drift}): replaced by a challenger trained on the days since"
    )
    # The floors still hold: a drifting champion is not replaced by a challenger far worse than seasonal naive.
    assert not decide(160.0, 100.0, on_unseen_days(90.0, 80.0, days=1), "3", 1.5, champion_drift=drift).promote
