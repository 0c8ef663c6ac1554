"""Generated files, good and bad, through the real landing folder and SQLite store: each is
accepted, held or rejected with a report, and the stored history stays valid and intact."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SAMPLE
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from schemas.daily import DailyHistory
from tasks import history_store
from tasks.config import load_settings
from tasks.input_file import value_columns
from tasks.landing import ingest_landing

ROWS = pd.read_csv(SAMPLE, dtype=str).iloc[:100]  # the stored history: 2020-03-01 .. 2020-06-08
LAST_DAY = pd.Timestamp("2020-06-08")
LAST_CUMULATIVE = int(ROWS["cumulative_cases"].iloc[-1])
COLUMNS = list(ROWS.columns)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A history store started once; each example works on its own copy."""
    root = tmp_path_factory.mktemp("fuzz-template")
    ROWS.to_csv(root / "initial.csv", index=False)
    ingest_landing(workspace_settings(root), init=True)
    return root


def workspace_settings(root: Path):
    return load_settings(
        None,
        [
            f'data.path="{root / "initial.csv"}"',
            f'retrain.incoming_dir="{root / "incoming"}"',
            f'retrain.history_path="{root / "history.db"}"',
            f'mlflow.store_dir="{root / "mlruns"}"',
        ],
        root=ROOT,
    )


def stored(settings_) -> pd.DataFrame:
    return history_store.read_history(history_store.open_store(settings_.retrain.store_url, value_columns(settings_.data)))


rarely = st.sampled_from([False] * 9 + [True])  # uniform draws; integers() would favour the bounds
odd_text = st.sampled_from(["", "NaN", "inf", "-inf", "-5", "1.5", "x", "1e30", " 7 ", "０"])


def clean_row(day: pd.Timestamp, cumulative: int, riders: int) -> dict:
    """A plausible row: the stored one for a stored day, else a new day after it."""
    if day <= LAST_DAY:
        return ROWS.set_index("date").loc[day.strftime("%Y-%m-%d")].to_dict() | {"date": day.strftime("%Y-%m-%d")}
    return ROWS.iloc[-1].to_dict() | {
        "date": day.strftime("%Y-%m-%d"),
        "riders": str(riders),
        "cumulative_cases": str(cumulative),
        "day_type": "0",
    }


@st.composite
def daily_files(draw) -> pd.DataFrame:
    """Rows around the end of the stored history: plausible ones, then every kind of damage mixed in."""
    start = LAST_DAY + pd.Timedelta(days=draw(st.sampled_from(range(-10, 4))))
    cumulative, rows = LAST_CUMULATIVE, []
    for i in range(draw(st.sampled_from(range(1, 9)))):
        cumulative += draw(st.integers(0, 400))
        rows.append(clean_row(start + pd.Timedelta(days=i), cumulative, draw(st.integers(500_000, 900_000))))
    for row in rows:  # damage some cells; many files stay clean
        if draw(rarely):
            row["date"] = draw(st.sampled_from(["2020-13-01", "", "06/10/2020", "2999-01-01", rows[0]["date"]]))
        if draw(rarely):
            row["riders"] = draw(st.one_of(odd_text, st.integers(0, 20_000_000).map(str)))
        if draw(rarely):
            row["cumulative_cases"] = draw(st.one_of(odd_text, st.integers(0, LAST_CUMULATIVE).map(str)))
        if draw(rarely):
            row["day_type"] = draw(st.sampled_from(["1", "2", "3", "-1", "", "a"]))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    damage = draw(st.sampled_from(["none", "none", "none", "drop", "rename", "extra"]))
    column = draw(st.sampled_from(["date", "riders", "cumulative_cases", "day_type"]))
    if damage == "drop":
        frame = frame.drop(columns=column)
    elif damage == "rename":
        frame = frame.rename(columns={column: column.upper()})
    elif damage == "extra":
        frame["comment"] = "checked"
    return frame


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=daily_files())
def test_a_generated_file_is_accepted_held_or_rejected_and_the_store_stays_valid(template, frame):
    root = Path(tempfile.mkdtemp(dir=template.parent))
    try:
        shutil.copy(template / "history.db", root / "history.db")
        shutil.copy(template / "initial.csv", root / "initial.csv")
        config = workspace_settings(root)
        before = stored(config)
        (root / "incoming").mkdir()
        frame.to_csv(root / "incoming" / "new.csv", index=False)

        result = ingest_landing(config)

        after = stored(config)
        DailyHistory.validate(after)  # one row per day, no gaps, whole non-negative counts
        assert [f.name for f in result.files] == ["new.csv"]
        kind = result.files[0].outcome
        event(kind)  # --hypothesis-show-statistics shows the mix of outcomes
        if kind == "rejected":
            report = pd.read_json(root / "incoming" / "rejected" / "new.csv.report.json")
            assert (
                len(report) and set(report["file"]) == {str(root / "incoming" / "new.csv")} and report["rule"].str.len().min() > 0
            )
            pd.testing.assert_frame_equal(after, before)
        elif kind == "waiting":
            assert (root / "incoming" / "new.csv").exists()
            pd.testing.assert_frame_equal(after, before)
        else:
            assert kind in {"added", "nothing_new"}
            assert (root / "incoming" / "processed" / "new.csv").exists()
            incoming = frame.assign(date=pd.to_datetime(frame["date"])).set_index("date")
            kept = after.set_index("date").loc[incoming.index]
            assert kept["travellers"].tolist() == incoming["riders"].astype(int).tolist()
            assert kept["cumulative_cases"].tolist() == incoming["cumulative_cases"].astype(int).tolist()
            # Days older than the revision window never change.
            oldest = LAST_DAY - pd.Timedelta(days=config.retrain.revision_window_days - 1)
            pd.testing.assert_frame_equal(after[after["date"] < oldest], before[before["date"] < oldest])
    finally:
        shutil.rmtree(root)
