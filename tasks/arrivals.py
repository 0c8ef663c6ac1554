"""What a validated file of new days does to the stored history: add, revise, wait or reject."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from schemas.daily import DATE, TARGET

Outcome = Literal["apply", "nothing_new", "wait", "reject"]
REVISION_COLUMNS = [DATE, "column", "old_value", "new_value"]
OUTLIER_WINDOW_DAYS = 28  # the median of the four weeks before a day is its yardstick


@dataclass(frozen=True)
class MergePlan:
    """The days a file adds, the stored cells it revises, and what to do with it."""

    outcome: Outcome
    reason: str
    new_days: pd.DataFrame
    revisions: pd.DataFrame


def _day(value: pd.Timestamp) -> str:
    return value.strftime("%Y-%m-%d")


def changed_cells(stored: pd.DataFrame, overlap: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Long table (date, column, old_value, new_value) of the cells where `overlap` differs."""
    both = overlap.merge(stored, on=DATE, suffixes=("_new", "_old"))
    changes = [
        pd.DataFrame(
            {DATE: both[DATE], "column": column, "old_value": both[f"{column}_old"], "new_value": both[f"{column}_new"]}
        )[both[f"{column}_old"] != both[f"{column}_new"]]
        for column in columns
    ]
    return pd.concat(changes, ignore_index=True).sort_values([DATE, "column"], ignore_index=True)


def plan_merge(
    stored: pd.DataFrame,
    incoming: pd.DataFrame,
    columns: list[str],
    revision_window_days: int,
    display_names: dict[str, str] | None = None,
) -> MergePlan:
    """Decide how a validated file (DailyHistory) merges into the stored history.

    `display_names` maps stored column names to the file's, for the reasons given.
    """
    none = incoming.iloc[0:0]
    if stored.empty:
        return MergePlan("apply", f"first {len(incoming)} days of the history", incoming, pd.DataFrame(columns=REVISION_COLUMNS))
    first, last = stored[DATE].min(), stored[DATE].max()
    if (incoming[DATE] < first).any():
        return MergePlan(
            "reject", f"has days before the stored history starts ({_day(first)})", none, pd.DataFrame(columns=REVISION_COLUMNS)
        )
    revisions = changed_cells(stored, incoming[incoming[DATE] <= last], columns)
    oldest_revisable = last - pd.Timedelta(days=revision_window_days - 1)
    too_old = revisions[revisions[DATE] < oldest_revisable]
    if len(too_old):
        cell = too_old.iloc[0]
        return MergePlan(
            "reject",
            f"changes {len(too_old)} stored value(s) older than the {revision_window_days}-day revision window "
            f"(from {_day(oldest_revisable)}), e.g. {(display_names or {}).get(cell['column'], cell['column'])} on {_day(cell[DATE])}: {cell['old_value']} -> {cell['new_value']}",
            none,
            revisions,
        )
    new_days = incoming[incoming[DATE] > last]
    if len(new_days) and new_days[DATE].min() != last + pd.Timedelta(days=1):
        missing_to = new_days[DATE].min() - pd.Timedelta(days=1)
        gap = f"{_day(last + pd.Timedelta(days=1))} .. {_day(missing_to)}"
        return MergePlan(
            "wait", f"starts {_day(new_days[DATE].min())} but the history ends {_day(last)}: waiting for {gap}", none, revisions
        )
    if new_days.empty and revisions.empty:
        return MergePlan("nothing_new", "every day in it is already stored with the same values", none, revisions)
    reason = f"adds {len(new_days)} day(s), revises {revisions[DATE].nunique()} day(s)"
    return MergePlan("apply", reason, new_days, revisions)


def merged_history(stored: pd.DataFrame, plan: MergePlan) -> pd.DataFrame:
    """The history as it would be after applying the plan."""
    merged = stored.set_index(DATE)
    for change in plan.revisions.itertuples(index=False):
        merged.loc[change.date, change.column] = change.new_value
    return pd.concat([merged.reset_index(), plan.new_days], ignore_index=True)


def outlier_days(history: pd.DataFrame, dates: pd.Series, factor: float) -> pd.DataFrame:
    """The days among `dates` whose travellers are over `factor` times above or below the median of the 28 days before.

    Days with fewer than a week before them are not judged. Returns date, value, median, ratio.
    """
    series = history.set_index(DATE)[TARGET].astype(float)
    median = series.rolling(OUTLIER_WINDOW_DAYS, min_periods=7).median().shift()
    judged = pd.DataFrame({DATE: series.index, "value": series.to_numpy(), "median": median.to_numpy()})
    judged = judged[judged[DATE].isin(dates) & judged["median"].notna()]
    judged["ratio"] = judged["value"] / judged["median"]
    outside = (judged["ratio"] > factor) | (judged["ratio"] < 1 / factor)
    return judged[outside].reset_index(drop=True)
