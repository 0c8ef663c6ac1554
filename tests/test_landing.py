"""The landing folder into a real history store (SQLite, and PostgreSQL on a throw-away cluster):
idempotent, atomic, revisions, gaps, bad files."""

import uuid

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import SAMPLE

from tasks import history_store
from tasks.input_file import value_columns
from tasks.landing import ingest_landing, open_history

ROWS = pd.read_csv(SAMPLE, dtype=str).iloc[:120]  # 2020-03-01 .. 2020-06-28, the file as written


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])  # PostgreSQL: a real cluster
def setup(request, tmp_path, tmp_store_settings):
    """Settings whose history (in each kind of store) is started from the first 100 days; a helper to drop files."""
    ROWS.iloc[:100].to_csv(tmp_path / "initial.csv", index=False)
    url = request.getfixturevalue("postgres").url(f"history_{uuid.uuid4().hex}") if request.param == "postgresql" else ""
    settings = tmp_store_settings(
        f'data.path="{tmp_path / "initial.csv"}"',
        f'retrain.incoming_dir="{tmp_path / "incoming"}"',
        f'retrain.history_path="{tmp_path / "history.db"}"',
        f'retrain.history_url="{url}"',
    )
    incoming = settings.retrain.incoming_dir
    incoming.mkdir(parents=True)

    def drop(name: str, rows: pd.DataFrame) -> None:
        rows.to_csv(incoming / name, index=False)

    return settings, incoming, drop


def stored(settings) -> pd.DataFrame:
    store = history_store.open_store(settings.retrain.store_url, value_columns(settings.data))
    return history_store.read_history(store)


def revisions(settings) -> pd.DataFrame:
    return history_store.read_revisions(history_store.open_store(settings.retrain.store_url, value_columns(settings.data)))


def listing(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("setup", ["sqlite"], indirect=True)  # the SQLite file's name and absence
def test_an_empty_or_missing_store_is_refused_unless_asked_to_start_it(setup):
    from tasks.landing import HistoryStoreMissing

    settings, _, _ = setup
    with pytest.raises(
        HistoryStoreMissing, match=r"no history in the store sqlite:///.*history\.db: start it from .*initial\.csv with"
    ) as refused:
        ingest_landing(settings)
    assert str(refused.value).endswith("; nothing was trained, registered or forecast")
    assert not settings.retrain.history_path.exists()  # a mistyped path creates nothing


def test_first_use_seeds_the_history_from_the_sample(setup):
    settings, _, _ = setup
    result = ingest_landing(settings, init=True)
    assert [(f.outcome, f.days_added) for f in result.files] == [("started", 100)]
    assert result.changed and result.last_date == "2020-06-08"
    assert len(stored(settings)) == 100


def test_new_days_are_appended_and_the_same_file_twice_adds_nothing(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    drop("day101.csv", ROWS.iloc[100:102])
    result = ingest_landing(settings, init=True)
    assert [(f.name, f.outcome, f.days_added) for f in result.files] == [("day101.csv", "added", 2)]
    drop("day101.csv", ROWS.iloc[100:102])  # delivered again, same bytes
    drop("copy.csv", ROWS.iloc[99:102])  # other bytes, same days and values
    again = ingest_landing(settings, init=True)
    assert {f.name: f.outcome for f in again.files} == {"day101.csv": "duplicate", "copy.csv": "nothing_new"}
    assert not again.changed and len(stored(settings)) == 102
    processed = listing(incoming)
    assert processed[0] == "processed/copy.csv" and processed[2] == "processed/day101.csv"
    assert processed[1].startswith("processed/day101.20") and len(processed) == 3  # never overwritten


def test_revisions_inside_the_window_are_applied_and_recorded(setup):
    settings, _, drop = setup
    ingest_landing(settings, init=True)
    revised = ROWS.iloc[95:101].copy()
    revised.loc[97, "riders"] = "512345"  # 2020-06-06, three days before the last stored day
    drop("revised.csv", revised)
    result = ingest_landing(settings, init=True)
    assert (result.files[0].outcome, result.days_added, result.days_revised) == ("added", 1, 1)
    assert stored(settings).set_index("date").loc["2020-06-06", "travellers"] == 512345
    change = revisions(settings).iloc[0]
    assert (change["column"], change["old_value"], change["new_value"]) == ("travellers", int(ROWS.loc[97, "riders"]), 512345)


def test_changes_outside_the_window_reject_the_file_and_store_nothing(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    before = stored(settings)
    old = ROWS.iloc[50:101].copy()
    old.loc[50, "riders"] = "1"  # 2020-04-20: far older than 14 days
    drop("old.csv", old)
    result = ingest_landing(settings, init=True)
    assert result.files[0].outcome == "rejected" and "revision window" in result.files[0].reason
    pd.testing.assert_frame_equal(stored(settings), before)
    assert revisions(settings).empty
    assert listing(incoming) == ["rejected/old.csv", "rejected/old.csv.report.csv", "rejected/old.csv.report.json"]
    report = pd.read_csv(incoming / "rejected" / "old.csv.report.csv")
    assert "riders on 2020-04-20" in report["rule"].iloc[0]  # the file's own column name


def test_a_file_after_a_gap_waits_until_the_gap_is_filled(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    drop("later.csv", ROWS.iloc[103:105])
    result = ingest_landing(settings, init=True)
    assert result.files[0].outcome == "waiting" and "waiting for 2020-06-09 .. 2020-06-11" in result.files[0].reason
    assert listing(incoming) == ["later.csv"] and len(stored(settings)) == 100
    drop("fill.csv", ROWS.iloc[100:103])
    result = ingest_landing(settings, init=True)
    assert [(f.name, f.outcome) for f in result.files] == [("fill.csv", "added"), ("later.csv", "added")]
    assert len(stored(settings)) == 105 and result.last_date == "2020-06-13"


def test_a_bad_file_is_rejected_with_its_report_and_the_history_is_unchanged(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    before = stored(settings)
    bad = ROWS.iloc[100:103].copy()
    bad.loc[101, "riders"] = "-7"
    bad.loc[102, "date"] = "2020-06-31"
    drop("bad.csv", bad)
    result = ingest_landing(settings, init=True)
    assert (result.files[0].outcome, result.files[0].reason) == ("rejected", "2 validation failure(s)")
    report = pd.read_json(incoming / "rejected" / "bad.csv.report.json")
    assert report[["line", "column", "value"]].values.tolist() == [[3, "riders", "-7"], [4, "date", "2020-06-31"]]
    pd.testing.assert_frame_equal(stored(settings), before)


def test_a_cumulative_count_falling_across_files_is_rejected(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    falling = ROWS.iloc[100:101].copy()
    falling.loc[100, "cumulative_cases"] = "10"
    drop("falling.csv", falling)
    result = ingest_landing(settings, init=True)
    assert result.files[0].outcome == "rejected"
    report = pd.read_csv(incoming / "rejected" / "falling.csv.report.csv")
    assert report[["line", "column", "check"]].values.tolist() == [[2, "cumulative_cases", "non_decreasing"]]
    assert "on 2020-06-09, with the stored history" in report["rule"].iloc[0]


CRASH_ON_DAY = {  # the database itself fails when the 2020-06-11 row is inserted
    "sqlite": [
        "CREATE TRIGGER crash BEFORE INSERT ON daily_history WHEN NEW.date = '2020-06-11' "
        "BEGIN SELECT RAISE(ABORT, 'simulated crash mid-ingest'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.date = DATE '2020-06-11' THEN RAISE EXCEPTION 'simulated crash mid-ingest'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER crash BEFORE INSERT ON daily_history FOR EACH ROW EXECUTE FUNCTION crash()",
    ],
}


def test_a_failure_mid_write_leaves_the_history_as_it_was(setup):
    settings, incoming, drop = setup
    store, _ = open_history(settings, init=True)
    before = stored(settings)
    # The database fails on the third new day, after two rows and a revision were written.
    with store.engine.begin() as connection:
        for statement in CRASH_ON_DAY[store.engine.dialect.name]:
            connection.execute(sa.text(statement))
    rows = ROWS.iloc[97:103].copy()
    rows.loc[98, "riders"] = "477777"  # a revision in the same file
    drop("three.csv", rows)
    with pytest.raises(sa.exc.DatabaseError, match="simulated crash mid-ingest"):
        ingest_landing(settings, init=True)
    pd.testing.assert_frame_equal(stored(settings), before)
    assert revisions(settings).empty
    assert listing(incoming) == ["three.csv"]  # not moved: the next run tries again
    with store.engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER crash" + (" ON daily_history" if store.engine.dialect.name != "sqlite" else "")))
    result = ingest_landing(settings, init=True)
    assert (result.days_added, result.days_revised) == (3, 1) and len(stored(settings)) == 103


def test_history_store_refuses_a_config_with_other_columns(setup):
    settings, _, _ = setup
    ingest_landing(settings, init=True)
    with pytest.raises(
        history_store.StoreUnreadable, match=r"the config expects .*give this config its own retrain\.history_path"
    ):
        history_store.open_store(settings.retrain.store_url, ["travellers", "other", "day_type"])


def test_a_corrupt_history_store_is_named_and_left_as_it_was(tmp_path):
    corrupt = tmp_path / "history.db"
    corrupt.write_bytes(b"not a database, whatever the name says\n" * 100)
    before = corrupt.read_bytes()
    with pytest.raises(history_store.StoreUnreadable, match=r"history\.db cannot be read \(file is not a database\): restore"):
        history_store.open_store(f"sqlite:///{corrupt}", ["travellers", "day_type"])
    assert corrupt.read_bytes() == before


def test_an_absurd_jump_is_held_back_with_its_day_and_ratio_and_can_be_let_through(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    before = stored(settings)
    typo = ROWS.iloc[100:102].copy()
    typo.loc[101, "riders"] = str(int(typo.loc[101, "riders"]) * 100)
    drop("typo.csv", typo)
    result = ingest_landing(settings, init=True)
    assert result.files[0].outcome == "rejected" and not result.changed
    report = pd.read_csv(incoming / "rejected" / "typo.csv.report.csv")
    assert report[["line", "column", "check"]].values.tolist() == [[3, "riders", "outlier"]]
    assert report["rule"].iloc[0].startswith("on 2020-06-10: 1") and "(retrain.outlier_factor)" in report["rule"].iloc[0]
    pd.testing.assert_frame_equal(stored(settings), before)
    (incoming / "rejected" / "typo.csv").rename(incoming / "typo.csv")  # the value was real after all
    result = ingest_landing(settings.model_copy(update={"retrain": settings.retrain.model_copy(update={"outlier_factor": 0})}))
    assert result.days_added == 2


def test_two_drops_of_one_name_at_once_keep_exactly_one_file_whole(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from tasks.landing import WaitingFileExists, drop_into_landing

    sources = []
    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        source = tmp_path / who / "day.csv"
        source.write_bytes(who.encode() * 4_000_000)  # large enough that the copies overlap
        sources.append(source)
    for attempt in range(6):
        landing, start = tmp_path / f"landing{attempt}", Barrier(2)

        def drop(source, landing=landing, start=start):
            start.wait()  # both pass any "is it there yet?" check together
            try:
                drop_into_landing(source, landing)
            except Exception as error:
                return type(error).__name__
            return "accepted"

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(drop, sources))
        assert sorted(results) == [WaitingFileExists.__name__, "accepted"]
        accepted = sources[results.index("accepted")]
        assert (landing / "day.csv").read_bytes() == accepted.read_bytes()
        assert [p.name for p in landing.iterdir()] == ["day.csv"]  # no partial file left behind


def test_ingest_of_a_missing_file_or_a_folder_says_so(tmp_path):
    from tasks.landing import drop_into_landing

    with pytest.raises(ValueError, match=r"missing\.csv: no such file; ingest takes one CSV file"):
        drop_into_landing(tmp_path / "missing.csv", tmp_path / "landing")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ValueError, match=r"folder\.csv: is a folder"):
        drop_into_landing(tmp_path / "folder.csv", tmp_path / "landing")


def test_an_upper_case_csv_name_is_read(setup):
    settings, _, drop = setup
    ingest_landing(settings, init=True)
    drop("DAY101.CSV", ROWS.iloc[100:102])
    result = ingest_landing(settings, init=True)
    assert [(f.name, f.outcome, f.days_added) for f in result.files] == [("DAY101.CSV", "added", 2)]


def test_the_same_content_under_two_names_is_added_once_and_the_copy_reported(setup):
    settings, incoming, drop = setup
    ingest_landing(settings, init=True)
    drop("a.csv", ROWS.iloc[100:102])
    drop("b.csv", ROWS.iloc[100:102])
    drop("later.csv", ROWS.iloc[104:105])
    drop("later2.csv", ROWS.iloc[104:105])
    result = ingest_landing(settings, init=True)
    assert [(f.name, f.outcome, f.reason) for f in result.files] == [
        ("a.csv", "added", "adds 2 day(s), revises 0 day(s)"),
        ("later.csv", "waiting", "starts 2020-06-13 but the history ends 2020-06-10: waiting for 2020-06-11 .. 2020-06-12"),
        ("b.csv", "duplicate", "the same content as a.csv, ingested in this run"),
        ("later2.csv", "waiting", "the same content as later.csv, which waits"),
    ]
    assert listing(incoming) == ["later.csv", "later2.csv", "processed/a.csv", "processed/b.csv"]
    assert result.held_back == (
        "later.csv: waiting (starts 2020-06-13 but the history ends 2020-06-10: waiting for 2020-06-11 .. 2020-06-12)",
        "later2.csv: waiting (the same content as later.csv, which waits)",
    )
    assert len(stored(settings)) == 102


def test_a_postgres_store_that_does_not_answer_is_named_before_anything_runs():
    from servers import free_port

    lock = history_store.AdvisoryLock(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/history", "retrain")
    with pytest.raises(
        history_store.StoreUnreadable,
        match=r"^history store postgresql\+psycopg://postgres@127\.0\.0\.1:\d+/history cannot be reached \(.*refused.*\); nothing",
    ):
        lock.acquire(timeout=0)
