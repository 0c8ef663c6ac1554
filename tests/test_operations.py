"""What an operator meets in daily use, through the real command: one clear line for every known
error (never a traceback), settings checked before Prefect starts, nothing stored changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SAMPLE
from servers import CLI, free_port

pytestmark = pytest.mark.integration  # real processes

DEAD_PREFECT = f"http://127.0.0.1:{free_port()}/api"  # nothing listens: a command that needs Prefect would fail on it


def command(args: list[str], tmp_path: Path, prefect_api: str = DEAD_PREFECT, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The CLI with its stores under tmp_path and, unless given, a Prefect API that does not answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_"))}
    env["PREFECT_API_URL"] = prefect_api
    stores = [
        *("--set", f'mlflow.store_dir="{tmp_path / "mlruns"}"', "--set", f'output_dir="{tmp_path / "out"}"'),
        *(
            "--set",
            f'retrain.incoming_dir="{tmp_path / "incoming"}"',
            "--set",
            f'retrain.history_path="{tmp_path / "history.db"}"',
        ),
    ]
    return subprocess.run([*CLI, *args, *stores], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def stopped_line(result: subprocess.CompletedProcess) -> str:
    """The one line a stop prints, after checking there is no traceback anywhere."""
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "--set", "model.epochs=abc"], "train stopped: invalid setting model.epochs: Input should be a valid integer"),
        (
            ["train", "--set", "model.learning_rate=-1"],
            "train stopped: invalid setting model.learning_rate: Input should be greater than 0 (got -1)",
        ),
        (
            ["retrain", "--epochs", "0"],
            "retrain stopped: invalid setting model.epochs: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            ["retrain", "--set", 'retrain.timezone="Mars/Base"'],
            "retrain stopped: invalid setting retrain.timezone: unknown time zone 'Mars/Base'",
        ),
        (["backtest", "--set", "preset=fast"], "backtest stopped: unknown preset 'fast'; choose one of ['default', 'seed']"),
        (["predict", "--set", "model"], "predict stopped: --set expects key=value, got 'model'"),
        (
            ["train", "--config", "missing.toml"],
            f"train stopped: {ROOT / 'missing.toml'}: cannot be read (No such file or directory)",
        ),
        (
            ["train", "--data", "missing.csv"],
            f"train stopped: {ROOT / 'missing.csv'}: no such input file (--data, or data.path in the config)",
        ),
        (
            ["retrain", "--set", 'data.pretrain_paths=["other_city.csv"]'],
            f"retrain stopped: {ROOT / 'other_city.csv'}: no such file (data.pretrain_paths: other series to pretrain the networks on)",
        ),
    ],
)
def test_a_bad_setting_or_missing_file_stops_with_one_line_before_prefect_starts(tmp_path, args, line):
    assert stopped_line(command(args, tmp_path)).startswith(line)
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "history.db").exists()


def test_a_broken_config_file_is_named_with_the_line(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\nepochs = 1\n")
    line = stopped_line(command(["retrain", "--config", str(broken)], tmp_path))
    assert (
        line
        == f"retrain stopped: {broken}: not valid TOML (Expected ']' at the end of a table declaration (at line 1, column 7))"
    )


def test_predict_refuses_zero_days_and_keeps_the_forecast_file(tmp_path):
    result = command(["predict", "--days", "0"], tmp_path)
    assert result.returncode == 2 and "argument --days: expects a whole number of days of at least 1, got '0'" in result.stderr


@pytest.mark.parametrize("rows", [1, 2, 10, 30])
def test_a_file_too_short_to_train_says_how_many_days_it_needs(tmp_path, prefect_env, rows):
    short = tmp_path / "short.csv"
    pd.read_csv(SAMPLE, dtype=str).iloc[:rows].to_csv(short, index=False)
    line = stopped_line(command(["train", "--data", str(short)], tmp_path, prefect_env["PREFECT_API_URL"]))
    assert line.startswith(f"train stopped: {rows} day(s) of history (2020-03-01 .. ")
    assert line.endswith(
        "needs 64 days to fit before the 28 backtest days (backtest.test_days), 92 in all: give a longer history or lower backtest.test_days"
    )
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # stopped before any MLflow run opened


def test_a_corrupt_history_store_stops_the_retrain_and_is_left_as_it_was(tmp_path, prefect_env):
    corrupt = tmp_path / "history.db"
    corrupt.write_bytes(b"not a database\n" * 1000)
    line = stopped_line(command(["retrain"], tmp_path, prefect_env["PREFECT_API_URL"]))
    assert line.startswith(
        f"retrain stopped: history store sqlite:///{corrupt} cannot be read (file is not a database): restore it"
    )
    assert corrupt.read_bytes() == b"not a database\n" * 1000


def test_ingest_of_a_missing_file_or_a_folder_says_so(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    for path, why in ((tmp_path / "nope.csv", "no such file"), (tmp_path / "folder.csv", "is a folder")):
        assert (
            stopped_line(command(["ingest", str(path)], tmp_path)) == f"ingest stopped: {path}: {why}; ingest takes one CSV file"
        )
    assert not (tmp_path / "incoming").exists() or not any((tmp_path / "incoming").iterdir())


def test_ingest_with_the_prefect_api_down_lands_the_file_and_does_not_claim_a_retrain_starts(tmp_path):
    day = tmp_path / "2024-11-15.csv"
    pd.read_csv(SAMPLE, dtype=str).iloc[[-1]].to_csv(day, index=False)
    result = command(["ingest", str(day)], tmp_path)
    assert result.returncode == 0 and "starts a retrain" not in result.stdout
    assert f"not announced: the Prefect API at {DEAD_PREFECT} does not answer (ConnectError)" in result.stderr
    assert (tmp_path / "incoming" / "2024-11-15.csv").read_bytes() == day.read_bytes()


def test_paths_on_the_command_line_are_under_the_working_folder_and_settings_under_the_project(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.csv").write_bytes(SAMPLE.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    mine = subprocess.run([*CLI, "validate", "mine.csv"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert mine.stdout == f"{elsewhere / 'mine.csv'}: valid, 1720 days from 2020-03-01 to 2024-11-14\n", mine.stderr
    code = "from tasks.config import load_settings; print(load_settings().data.path)"
    default = subprocess.run([*CLI[:1], "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert default.stdout.strip() == str(SAMPLE)


def test_a_file_in_ten_thousands_trains_and_forecasts_in_its_unit_with_one_setting(tmp_path, prefect_env):
    rows = pd.read_csv(ROOT / "data" / "examples" / "seed_format.csv", dtype=str)
    rows["Num"] = [f"{int(n) / 10000:.2f}" for n in rows["Num"]]  # as Chinese operators publish daily trips
    wan = tmp_path / "wan.csv"
    rows.to_csv(wan, index=False)
    settings = ["--config", str(ROOT / "config" / "seed-format.toml"), "--set", f'data.path="{wan}"', "--set", "model.epochs=2"]
    settings += ["--set", "data.target_unit=10000"]  # the one line
    api = prefect_env["PREFECT_API_URL"]
    retrain = command(["retrain", "--init", *settings], tmp_path, api)
    assert retrain.returncode == 0 and retrain.stdout.strip().splitlines()[-1].startswith("promoted"), retrain.stderr[-3000:]
    predict = command(["predict", "--days", "2", *settings], tmp_path, api)
    assert predict.returncode == 0, predict.stderr[-3000:]
    forecast = pd.read_csv(predict.stdout.strip().splitlines()[-1].removeprefix("written to "))
    last_week = rows["Num"].astype(float).iloc[-7:]
    assert forecast["date"].tolist() == ["2020-09-01", "2020-09-02"]
    assert last_week.min() / 3 < forecast["forecast"].mean() < last_week.max() * 3  # in 10,000s, not in travellers


def test_a_file_with_one_repeated_problem_prints_a_summary_and_where_every_failure_is(tmp_path):
    rows = pd.read_csv(SAMPLE, dtype=str)
    rows["riders"] = "-" + rows["riders"]  # every one of 1,720 rows breaks the same rule
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    result = command(["validate", str(bad)], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{bad}: 1720 validation failure(s)"
    assert lines[1].startswith("1720 x riders: not negative (lines 2, 3, 4, 5, 6, ...; e.g. '-")
    assert lines[2].startswith(f"every failure: {tmp_path / 'out'}/validate-") and len(lines) == 3
    assert len(pd.read_csv(lines[2].removeprefix("every failure: "))) == 1720
