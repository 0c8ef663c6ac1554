"""Many series in one long-format file: per-series settings, validation that names the file's lines, and the
train / retrain / ingest / predict commands that fan out over the series (Dask workers, a real Prefect server)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT
from servers import CLI

from tasks.config import load_settings
from tasks.errors import ConfigError, InputUnreadable
from tasks.input_file import InputValidationError, read_csv, read_history_file, series_histories

MODES = ROOT / "data" / "examples" / "mta_modes.csv"
LONG = 'data.series_column="series"'


def test_each_series_has_its_own_model_store_landing_folder_and_overrides(tmp_path):
    settings = load_settings(
        None,
        [
            LONG,
            "series.lirr.model.epochs=5",
            f'retrain.history_path="{tmp_path / "h.db"}"',
            f'retrain.incoming_dir="{tmp_path / "in"}"',
        ],
    )
    lirr, bus = settings.for_series("lirr"), settings.for_series("bus")
    assert settings.many_series and not lirr.many_series
    assert (lirr.model.epochs, bus.model.epochs, settings.model.epochs) == (5, 200, 200)
    assert (lirr.mlflow.registered_model, lirr.data.series) == ("travel-forecast-lirr", "lirr")
    assert lirr.retrain.history_path == tmp_path / "series" / "lirr" / "h.db"
    assert lirr.retrain.incoming_dir == tmp_path / "in" / "lirr"
    assert lirr.data.path == bus.data.path == settings.data.path  # the long file, read for the series' rows


def test_a_file_with_a_series_column_is_long_format_unless_the_config_says_otherwise():
    from conftest import SAMPLE

    from flows.cli import _parser, _settings

    settings = lambda *argv: _settings(_parser().parse_args(["validate", *argv]))
    assert settings(str(MODES)).many_series and settings(str(MODES)).data.series_column == "series"
    assert settings(str(MODES), "--set", 'data.series="bus"').mlflow.registered_model == "travel-forecast-bus"
    assert not settings(str(SAMPLE)).many_series


def test_a_bad_setting_of_one_series_is_refused_at_load_naming_the_series():
    with pytest.raises(ConfigError, match=r"\[series\.lirr\] model\.epochs: Input should be greater than or equal to 1"):
        load_settings(None, [LONG, "series.lirr.model.epochs=0"])
    with pytest.raises(ConfigError, match=r"series names are letters, digits, _ \. - .*got \['a/b'\]"):
        load_settings(None, [LONG, "series.a/b.model.epochs=3"])
    with pytest.raises(ConfigError, match=r"retrain.history_schema names a PostgreSQL schema: it needs retrain.history_url"):
        load_settings(None, ['retrain.history_schema="series_bus"'])


def test_on_postgresql_each_series_keeps_its_history_in_its_own_schema():
    url = "postgresql+psycopg://u@localhost/h"
    settings = load_settings(None, [LONG, f'retrain.history_url="{url}"'])
    bus = settings.for_series("bus")
    assert (bus.retrain.store_url, bus.retrain.history_schema, settings.retrain.history_schema) == (url, "series_bus", None)


def long_rows(series: dict[str, int], last_day: str = "2024-11-14") -> pd.DataFrame:
    """The MTA modes file's last `days` rows of each named series, as written (strings), dates ascending."""
    modes = pd.read_csv(MODES, dtype=str)
    parts = [modes[(modes["series"] == name) & (modes["date"] <= last_day)].tail(days) for name, days in series.items()]
    return pd.concat(parts).sort_values("date", kind="stable").reset_index(drop=True)


def test_failures_of_a_long_file_name_the_lines_of_the_whole_file(tmp_path):
    path = tmp_path / "modes.csv"
    rows = long_rows({"bus": 5, "lirr": 5})  # lines 2..11: bus and lirr alternate by date
    rows.loc[2, "riders"] = "many"  # line 4
    rows.loc[5, "series"] = "bus line"  # line 7: not a series name, so lirr misses its third day (line 9)
    rows.loc[9, "date"] = rows.loc[7, "date"]  # line 11: lirr's fourth day again
    rows.to_csv(path, index=False)
    settings = load_settings(None, [LONG], updates={"data": {"path": str(path)}})
    with pytest.raises(InputValidationError) as failed:
        series_histories(read_csv(path, settings.data), settings.data, path)
    report = failed.value.report
    assert report[["line", "column", "check"]].values.tolist() == [
        [4, "riders", "not_nullable"],
        [7, "series", "series_name"],
        [9, "date", "field_uniqueness"],
        [9, "date", "no_missing_days"],
        [11, "date", "field_uniqueness"],
    ]
    assert report.loc[1, "value"] == "bus line"


def test_one_series_of_a_long_file_is_read_by_naming_it(tmp_path):
    path = tmp_path / "modes.csv"
    long_rows({"bus": 30, "lirr": 20}).to_csv(path, index=False)
    settings = load_settings(None, [LONG], updates={"data": {"path": str(path)}})
    lirr = read_history_file(path, settings.for_series("lirr").data)
    assert len(lirr) == 20 and lirr["date"].max() == pd.Timestamp("2024-11-14")
    with pytest.raises(InputUnreadable, match=r"no rows of series 'sir' \(data.series\); it has \['bus', 'lirr'\]"):
        read_history_file(path, settings.data.model_copy(update={"series": "sir"}))


def test_the_series_table_shows_a_retrain_per_series_and_leaves_out_empty_columns():
    from dataclasses import dataclass

    from tasks.series_tasks import SeriesOutcome, format_series_table, series_table

    @dataclass
    class Retrained:  # the fields of flows.retrain.RetrainSummary the table reads
        status: str
        days_added: int
        days_revised: int
        model_version: str | None
        reason: str | None

    table = series_table(
        [
            SeriesOutcome("bus", Retrained("promoted", 1, 0, "3", "MAE 41,000 vs 42,685")),
            SeriesOutcome("lirr", Retrained("no new data", 0, 0, None, None)),
            SeriesOutcome("sir", None, "HistoryTooShort: 20 days"),
        ]
    )
    assert list(table.columns) == ["series", "status", "days_added", "days_revised", "model", "decision", "error"]
    assert format_series_table(table).splitlines() == [
        "series      status days_added days_revised model             decision                    error",
        "   bus    promoted          1            0    v3 MAE 41,000 vs 42,685                         ",
        "  lirr no new data          0            0                                                    ",
        "   sir      failed                                                    HistoryTooShort: 20 days",
    ]


# --- the commands, end to end ----------------------------------------------------------------------------------


def run(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


def registered(store: Path) -> dict[str, list[str]]:
    """Registered model -> its versions' aliases, read from the MLflow store's database."""
    with sqlite3.connect(store / "mlflow.db") as db:
        versions = db.execute("select name, version from model_versions order by name, version").fetchall()
        aliases = {
            (name, version): alias
            for name, version, alias in db.execute("select name, version, alias from registered_model_aliases")
        }
    models: dict[str, list[str]] = {}
    for name, version in versions:
        models.setdefault(name, []).append(aliases.get((name, version), ""))
    return models


@pytest.fixture
def workspace(tmp_path):
    """A long-format file of two MTA modes (a day short of their last) and one series too short to train."""
    root = tmp_path
    rows = long_rows({"bus": 120, "lirr": 120}, last_day="2024-11-13")
    short = long_rows({"lirr": 20}, last_day="2024-11-13").assign(series="sir")
    pd.concat([rows, short]).sort_values("date", kind="stable").to_csv(root / "modes.csv", index=False)
    config = root / "modes.toml"
    config.write_text(
        f'output_dir = "{root / "out"}"\n'
        f'[data]\npath = "{root / "modes.csv"}"\nseries_column = "series"\n'
        "[model]\nepochs = 2\n[backtest]\ntest_days = 7\n"
        f'[mlflow]\nstore_dir = "{root / "mlruns"}"\nregistered_model = "modes"\n'
        f'[retrain]\nincoming_dir = "{root / "incoming"}"\nhistory_path = "{root / "history.db"}"\n'
        "max_baseline_ratio = 100.0\nmax_peer_ratio = 100.0\nallow_peer_champion = false\n"
        "[series.lirr.model]\nensemble = 2\n"  # one series' own setting
    )
    return root, config


@pytest.mark.integration
def test_train_fans_out_over_the_series_on_dask_workers_and_reports_the_ones_that_failed(workspace, prefect_env):
    root, config = workspace
    diverging = ["--set", "series.bus.model.learning_rate=1e30"]  # bus fails mid-training, sir before it starts
    result = run(["train", "--config", str(config), "--workers", "2", *diverging], prefect_env, root)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "train stopped: 2 of 3 series failed (bus, sir); the others finished:" in result.stderr
    assert registered(root / "mlruns") == {"modes-lirr": [""]}  # train registers; retrain promotes
    table = pd.read_csv(next((root / "out").glob("train-*/series.csv")))
    assert table[["series", "status", "model"]].fillna("").values.tolist() == [
        ["bus", "failed", ""],
        ["lirr", "registered", "modes-lirr v1"],
        ["sir", "failed", ""],
    ]
    assert table.loc[0, "error"].startswith("TrainingDiverged: ") and table.loc[2, "error"].startswith("HistoryTooShort: ")
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as db:
        runs = dict(db.execute("select run_uuid, status from runs").fetchall())
        parent = db.execute("select run_uuid from tags where key='kind' and value='train'").fetchone()[0]
        children = dict(db.execute("select run_uuid, value from tags where key='mlflow.parentRunId'").fetchall())
        series = dict(db.execute("select run_uuid, value from tags where key='series'").fetchall())
        ensemble = dict(db.execute("select run_uuid, value from params where key='model.ensemble'").fetchall())
    assert runs[parent] == "FAILED" and series[parent] == "bus,lirr,sir" and "RUNNING" not in runs.values()
    per_series = {series[run]: run for run, up in children.items() if up == parent}
    assert {name: runs[run] for name, run in per_series.items()} == {"bus": "FAILED", "lirr": "FINISHED"}
    assert (ensemble[per_series["bus"]], ensemble[per_series["lirr"]]) == ("3", "2")  # lirr's own setting


@pytest.mark.integration
def test_retrain_then_a_file_for_one_series_retrains_only_it_and_predict_forecasts_every_series(workspace, prefect_env):
    root, config = workspace
    env = {k: v for k, v in prefect_env.items() if k != "PREFECT_API_URL"}  # no server: ingest drops, retrain runs by hand
    started = run(["retrain", "--init", "--config", str(config), "--set", 'data.series="bus"'], env, root)
    assert started.returncode == 0, started.stderr[-3000:]
    everything = run(["retrain", "--init", "--config", str(config)], env, root)
    assert everything.returncode == 1 and "1 of 3 series failed (sir)" in everything.stderr, everything.stderr[-3000:]
    table = pd.read_csv(max((root / "out").glob("retrain-*/series.csv")))
    assert table[["series", "status"]].values.tolist() == [["bus", "no new data"], ["lirr", "promoted"], ["sir", "failed"]]

    last_day = long_rows({"bus": 1}).drop(columns="series")
    last_day.to_csv(root / "bus__2024-11-14.csv", index=False)
    dropped = run(["ingest", "--config", str(config), str(root / "bus__2024-11-14.csv")], env, root)
    assert dropped.returncode == 0 and (root / "incoming" / "bus" / "bus__2024-11-14.csv").is_file(), dropped.stderr
    wrong = run(["ingest", "--config", str(config), str(root / "modes.csv")], env, root)
    assert wrong.returncode == 1 and "is named <series>__<anything>.csv, <series> one of bus, lirr, sir" in wrong.stderr

    again = run(["retrain", "--config", str(config)], env, root)
    table = pd.read_csv(max((root / "out").glob("retrain-*/series.csv")))
    assert table[["series", "days_added"]].fillna(-1).values.tolist() == [["bus", 1], ["lirr", 0], ["sir", -1]], again.stderr[
        -3000:
    ]
    assert table["status"].tolist()[1:] == ["no new data", "failed"]  # bus: promoted or not, by the gate
    models = registered(root / "mlruns")
    assert (len(models["modes-bus"]), models["modes-lirr"]) == (2, ["champion"])  # one version per retrain that trained
    bus_champion = models["modes-bus"].index("champion") + 1

    forecast = run(["predict", "--config", str(config), "--days", "7"], env, root)
    assert forecast.returncode == 1, forecast.stderr[-3000:]  # sir never trained: the others are forecast, the run says so
    assert "predict stopped: 1 series without a forecast (sir: no 'champion' alias on model 'modes-sir'" in forecast.stderr
    written = pd.read_csv(next((root / "out").glob("forecast-*.csv")))
    assert written.groupby("series")["date"].agg(["first", "last"]).values.tolist() == [
        ["2024-11-15", "2024-11-21"],  # bus: the day after the file's
        ["2024-11-14", "2024-11-20"],
    ]
    assert written.groupby("series")["model_version"].first().to_dict() == {"bus": bus_champion, "lirr": 1}
