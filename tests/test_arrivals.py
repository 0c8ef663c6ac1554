"""How a validated file merges into the stored history (pure logic)."""

import pandas as pd

from tasks.arrivals import merged_history, outlier_days, plan_merge

COLUMNS = ["travellers", "cases", "day_type"]


def days(first: str, travellers: list[int], cases: list[int] | None = None) -> pd.DataFrame:
    n = len(travellers)
    return pd.DataFrame(
        {
            "date": pd.date_range(first, periods=n),
            "travellers": travellers,
            "cases": cases if cases is not None else list(range(n)),
            "day_type": [0] * n,
        }
    )


STORED = days("2024-01-01", [100] * 20, list(range(20)))  # through 2024-01-20


def test_first_file_starts_everything():
    plan = plan_merge(STORED.iloc[0:0], STORED, COLUMNS, 14)
    assert plan.outcome == "apply" and len(plan.new_days) == 20


def test_new_days_right_after_the_history_are_added():
    plan = plan_merge(STORED, days("2024-01-21", [120, 130], [20, 21]), COLUMNS, 14)
    assert (plan.outcome, len(plan.new_days), len(plan.revisions)) == ("apply", 2, 0)
    assert plan.reason == "adds 2 day(s), revises 0 day(s)"


def test_the_same_days_again_add_nothing():
    plan = plan_merge(STORED, STORED.iloc[-3:], COLUMNS, 14)
    assert plan.outcome == "nothing_new" and plan.new_days.empty and plan.revisions.empty


def test_a_changed_recent_day_is_a_revision_with_old_and_new_values():
    revised = days("2024-01-19", [100, 90, 110], [18, 19, 20])  # 01-20 travellers 100 -> 90, plus a new day
    plan = plan_merge(STORED, revised, COLUMNS, 14)
    assert plan.outcome == "apply" and len(plan.new_days) == 1
    assert plan.revisions.to_dict("records") == [
        {"date": pd.Timestamp("2024-01-20"), "column": "travellers", "old_value": 100, "new_value": 90}
    ]
    merged = merged_history(STORED, plan)
    assert merged["travellers"].tolist()[-2:] == [90, 110] and len(merged) == 21


def test_revision_window_edge_is_inclusive_and_older_changes_are_rejected():
    # window 14 with history through 01-20: 01-07 .. 01-20 may change, 01-06 may not
    inside = plan_merge(STORED, days("2024-01-07", [99], [6]), COLUMNS, 14)
    assert inside.outcome == "apply" and len(inside.revisions) == 1
    outside = plan_merge(STORED, days("2024-01-06", [99], [5]), COLUMNS, 14)
    assert outside.outcome == "reject"
    assert "older than the 14-day revision window (from 2024-01-07)" in outside.reason
    assert "travellers on 2024-01-06: 100 -> 99" in outside.reason


def test_a_file_after_a_gap_waits_and_names_the_missing_days():
    plan = plan_merge(STORED, days("2024-01-24", [1, 2], [30, 31]), COLUMNS, 14)
    assert plan.outcome == "wait"
    assert plan.reason == "starts 2024-01-24 but the history ends 2024-01-20: waiting for 2024-01-21 .. 2024-01-23"


def test_days_before_the_history_are_rejected():
    plan = plan_merge(STORED, days("2023-12-31", [1, 100], [0, 0]), COLUMNS, 14)
    assert plan.outcome == "reject" and "before the stored history starts (2024-01-01)" in plan.reason


def test_outliers_are_judged_against_the_median_of_the_days_before():
    values = [100, 110, 90, 100, 105, 95, 100, 1_000, 100, 9, 1_200]
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=11), "travellers": values})
    found = outlier_days(frame, frame["date"].iloc[6:], factor=5)
    # Day 7 has only 6 days before it: not judged. Medians of the days before: day 8 of
    # 90..110 -> 100 (1,000 is 10x); day 10, the outlier 1,000 among them -> still 100 (9 is 0.09x);
    # day 11 -> 100 (1,200 is 12x).
    assert found["date"].dt.day.tolist() == [8, 10, 11]
    assert found["median"].tolist() == [100.0, 100.0, 100.0]
    assert found["ratio"].tolist() == [10.0, 0.09, 12.0]
    assert outlier_days(frame, frame["date"], factor=20).empty
