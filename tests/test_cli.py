"""The `travel-forecast` command, run as a user runs it: a real process, real Prefect and MLflow."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, SAMPLE, SEED_FORMAT_CONFIG

pytestmark = pytest.mark.integration  # real servers or processes

CLI = [sys.executable, "-m", "flows.cli"]


@pytest.fixture
def cli_env(prefect_server):
    """The environment of a user's shell, pointed at the test's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if k not in {"MLFLOW_TRACKING_URI", "PREFECT_API_URL"}}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return env


def run(args, env, tmp_path):
    store = ["--set", f'mlflow.store_dir="{tmp_path / "mlruns"}"', "--set", f'output_dir="{tmp_path / "out"}"']
    return subprocess.run([*CLI, *args, *store], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def registered_versions(tmp_path, name):
    import mlflow

    if not (tmp_path / "mlruns" / "mlflow.db").exists():
        return []
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    return [str(v.version) for v in client.search_model_versions(f"name='{name}'")]


def test_help_loads_no_heavy_library():
    code = (
        "import sys\nfrom flows.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'prefect', 'pandas') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "usage: travel-forecast" in result.stdout
    assert "HEAVY []" in result.stdout


def test_one_off_flows_preload_what_they_need_and_run_without_heartbeats(cli_env):
    code = (
        "import sys\nfrom flows.runtime import one_off_flow_runtime\nfrom prefect.settings import get_current_settings\n"
        "for command in ('retrain', 'train'):\n"
        "    with one_off_flow_runtime(command):\n"
        "        print(command, get_current_settings().flows.heartbeat_frequency, 'flows.' + command in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=120)
    # retrain with nothing new must not pay for TensorFlow; train always fits a network.
    assert result.stdout.splitlines() == ["retrain None True False", "train None True True"], result.stderr[-2000:]


def test_the_temporary_prefect_server_gets_time_to_start_on_a_busy_machine(tmp_path):
    # Without PREFECT_API_URL a command starts Prefect's temporary server. No machine starts it within 1 s: with
    # Prefect's timeout as given the command failed with a traceback (on a busy machine, with Prefect's 20 s, a
    # timeout traceback, then a second server's bind traceback).
    # Nor does it send telemetry (an error line on an offline machine, and once a "database is locked" traceback
    # writing its session row), unless the user's environment asks for it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}
    code = (
        "import httpx\nfrom flows.runtime import one_off_flow_runtime\nfrom prefect.server.api.server import SubprocessASGIServer\n"
        "with one_off_flow_runtime('retrain'):\n"
        "    print(httpx.get(SubprocessASGIServer().api_url + '/health', timeout=10).status_code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.splitlines() == ["200"], result.stderr[-3000:]
    for failure in ("Timed out", "address already in use", "Traceback", "telemetry"):
        assert failure not in result.stderr, result.stderr[-3000:]


def test_a_command_ends_once_its_task_runs_last_states_are_recorded(prefect_server):
    # The server records a task run's states from the client's events; the temporary server stopped before the last
    # one was written left the task run Running for good under a Failed flow run (about 1 command in 10).
    import threading
    import time
    from datetime import UTC, datetime

    from prefect import flow, get_client, task
    from prefect.states import Completed, Failed, Running

    from flows.runtime import wait_for_task_runs_recorded

    @flow
    def command_flow():
        pass

    @task
    def step():
        pass

    before = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        stale = client.create_task_run(step, client.create_flow_run(command_flow, state=Failed()).id, "0", state=Running())
        since = datetime.now(UTC)
        assert stale.start_time < since
        assert wait_for_task_runs_recorded(since, timeout=0.3)  # an earlier command's task run is not waited for
        ended = client.create_flow_run(command_flow, state=Failed())
        last = client.create_task_run(step, ended.id, "1", state=Running())
        going = client.create_flow_run(command_flow, state=Running())  # another command's run, still going
        client.create_task_run(step, going.id, "2", state=Running())
        assert not wait_for_task_runs_recorded(since, timeout=0.3)  # the ended run's task run is still Running

        def record_the_last_state():
            with get_client(sync_client=True) as recorder:
                recorder.set_task_run_state(last.id, Completed(), force=True)

        threading.Timer(0.5, record_the_last_state).start()
        start = time.monotonic()
        assert wait_for_task_runs_recorded(since, timeout=10)
        assert 0.4 < time.monotonic() - start < 5
        assert wait_for_task_runs_recorded(before, timeout=0.3) is False  # the stale one again, from before it


def test_train_on_the_seed_format_example_config_end_to_end(cli_env, tmp_path):
    result = run(["train", "--config", str(SEED_FORMAT_CONFIG), "--set", "model.epochs=2"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout[result.stdout.index("Backtest 2020-08-01 .. 2020-08-31") :]  # the recipe's last 31 days
    for forecaster in ("lstm", "naive", "seasonal_naive"):
        assert forecaster in table
    for metric in ("mae", "rmse", "mape", "smape", "mase", "r2"):
        assert metric in table
    assert "Prediction intervals of lstm: 80% covered" in table
    assert "Registered model 'travel-forecast-seed-format' version 1" in result.stdout
    assert registered_versions(tmp_path, "travel-forecast-seed-format") == ["1"]
    # The recipe's way: one fit, before the 31 test days, and that model is registered.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert client.get_model_version("travel-forecast-seed-format", "1").tags["fitted_through"] == "2020-07-31"


def test_backtest_command_scores_without_registering(cli_env, tmp_path):
    args = ["backtest", "--set", "model.epochs=2", "--set", "backtest.test_days=14", "--set", "backtest.refit_every=7"]
    args += ["--set", 'model.combine_with=["seasonal_naive"]']  # the compared peers stay; AutoARIMA's fits take tens of seconds
    result = run(args, cli_env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Backtest 2024-11-01 .. 2024-11-14, one step ahead" in result.stdout
    assert re.search(
        r"lstm: MAE \d+\.\d{3}x the best peer's \((auto_\w+|seasonal_naive|naive)\), \d+\.\d{3}x seasonal naive's", result.stdout
    )
    assert registered_versions(tmp_path, "travel-forecast") == []
    folds = pd.read_csv(next((tmp_path / "out").glob("backtest-*/fold_metrics.csv")))
    assert folds.groupby("fold")["days"].first().tolist() == [7, 7]


def test_train_says_what_happened_in_at_most_40_lines_without_third_party_noise(cli_env, tmp_path):
    env = {k: v for k, v in cli_env.items() if not k.startswith(("TF_CPP", "MLFLOW_"))}  # as a user's shell has them
    result = run(["train", "--set", "model.epochs=3"], env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    for noise in ("oneDNN", "absl::InitializeLog", "Downloading artifacts", "epoch 1/3", "Successfully registered model"):
        assert noise not in result.stdout + result.stderr
    assert not re.search(r"Task run '[^']+' - Finished in state Completed\(\)", result.stderr)  # the flow's own line stays
    fits = [line for line in lines if re.search(r"network \d: \d+ of 3 epochs, best at epoch \d", line)]
    assert len(fits) == 3  # one line per network of the ensemble


def test_on_a_terminal_a_fit_shows_one_progress_line_that_it_clears_before_its_summary(cli_env, tmp_path):
    import pty

    primary, secondary = pty.openpty()  # as a user's terminal: the command sees a tty on both outputs
    store = ["--set", f'mlflow.store_dir="{tmp_path / "mlruns"}"', "--set", f'output_dir="{tmp_path / "out"}"']
    store += ["--set", "model.combine_with=[]", "--set", "backtest.compare=[]"]  # the networks' progress is what is shown
    process = subprocess.Popen(
        [*CLI, "train", "--set", "model.epochs=3", *store],
        cwd=ROOT,
        env=cli_env | {"TERM": "xterm"},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=600) == 0, screen[-3000:]
    os.close(primary)
    text = screen.decode(errors="replace")
    bars = re.findall(r"\r\x1b\[Knetwork (\d)/3 \[([#-]{20})\] epoch (\d)/3", text)
    assert {(member, epoch) for member, _, epoch in bars} >= {(m, e) for m in "123" for e in "123"}, text[-3000:]
    assert ("3", "#" * 20, "3") in bars
    # Cleared once per fit (the backtest's, then the registered model's), before the fit's summary lines.
    clears = [m.start() for m in re.finditer(r"\r\x1b\[K(?!network \d/3)", text)]
    summaries = [m.start() for m in re.finditer(r"network \d: \d+ of 3 epochs, best at epoch \d", text)]
    assert len(clears) == 2 and len(summaries) == 3 and clears[-1] < summaries[0], text[-3000:]


def test_train_on_a_bad_file_prints_the_report_and_registers_nothing(cli_env, tmp_path):
    bad = pd.read_csv(SAMPLE, dtype=str)
    bad.loc[4, "riders"] = "many"
    bad.loc[9, "day_type"] = "4"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    result = run(["train", "--data", str(tmp_path / "bad.csv")], cli_env, tmp_path)
    assert result.returncode == 1
    assert "2 validation failure(s); nothing was trained or registered" in result.stderr
    assert "many" in result.stderr and "day_type_code" in result.stderr
    assert registered_versions(tmp_path, "travel-forecast") == []
    reports = list((tmp_path / "out").glob("*/validation_report.json"))
    assert len(reports) == 1 and pd.read_json(reports[0])["line"].tolist() == [6, 11]


def test_validate_command_reports_without_training(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    good = subprocess.run([*CLI, "validate", str(SAMPLE)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and "valid, 1720 days from 2020-03-01 to 2024-11-14" in good.stdout
    (tmp_path / "bad.csv").write_text(SAMPLE.read_text().replace("2020-03-03,5481103", "2020-03-03,-1", 1))
    bad = subprocess.run(
        [*CLI, "validate", str(tmp_path / "bad.csv")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1
    assert "1 validation failure(s)" in bad.stderr and "greater_than_or_equal_to(0)" in bad.stderr
    assert not (tmp_path / "mlruns").exists()


def test_the_program_ends_after_every_exit_handler_with_mains_code(tmp_path):
    (tmp_path / "bad.csv").write_text(SAMPLE.read_text().replace("2020-03-03,5481103", "2020-03-03,-1", 1))
    code = (
        "import atexit, sys\nimport flows.cli as cli\nfrom flows.cli import main\n"
        "def with_handler():\n"
        "    atexit.register(lambda: print('handler of the command ran', flush=True))\n"
        "    return main()\n"
        f"cli.main = with_handler\nsys.argv = ['travel-forecast', 'validate', {str(tmp_path / 'bad.csv')!r}]\ncli.command()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # main's, through the end without teardown
    assert "handler of the command ran" in result.stdout  # the handlers registered while it ran came first
    assert "1 validation failure(s)" in result.stderr


def test_an_auto_ets_version_registers_and_predict_uses_it_when_champion(cli_env, tmp_path):
    trained = run(["train", "--set", "model.kind=auto_ets", "--set", "backtest.compare=[]"], cli_env, tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "Registered model 'travel-forecast' version 1, auto_ets" in trained.stdout
    assert "auto_ets" in trained.stdout and "seasonal_naive" in trained.stdout  # the gate's floor is always scored
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert client.get_model_version("travel-forecast", "1").tags["kind"] == "auto_ets"
    client.set_registered_model_alias("travel-forecast", "champion", "1")  # as the gate (or an operator) would
    store = [
        "--set",
        f'retrain.history_path="{tmp_path / "history.db"}"',
        "--set",
        f'retrain.incoming_dir="{tmp_path / "incoming"}"',
    ]
    from tasks.config import load_settings
    from tasks.landing import open_history

    open_history(load_settings(None, [store[1], store[3]]), init=True)  # the store a first `retrain --init` starts
    predicted = run(["predict", "--days", "7", *store], cli_env, tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert re.search(
        r"the history ends 2024-11-14, \d+ days ago in America/New_York: the forecast starts 2024-11-15, not tomorrow",
        predicted.stderr,
    )
    forecast = pd.read_csv(next((tmp_path / "out").glob("forecast-*.csv")))
    assert forecast["date"].tolist() == [f"2024-11-{day}" for day in range(15, 22)]
    assert (forecast["kind"] == "auto_ets").all() and (forecast["model_version"] == 1).all()
    assert forecast["forecast"].between(1e5, 2e7).all() and (forecast["upper_80"] > forecast["forecast"]).all()


DROPPED_STOP = """
import os, signal, sys, threading, time, weakref
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background runner may ignore it)
from flows.cli import _resend_dropped_stop
if sys.argv[1] == "resend":
    sys.unraisablehook = _resend_dropped_stop
class Thing: pass
thing = Thing()
collected = weakref.ref(thing, lambda _: time.sleep(1.0))  # a garbage-collection callback, running when Ctrl-C comes
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    del thing
    time.sleep(3)
    print("went on")
except KeyboardInterrupt:
    print("stopped")
"""


@pytest.mark.parametrize(("hook", "outcome"), [("python's", "went on"), ("resend", "stopped")])
def test_a_ctrl_c_that_lands_in_a_garbage_collection_callback_still_stops_the_command(hook, outcome):
    done = subprocess.run([sys.executable, "-c", DROPPED_STOP, hook], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == outcome, done.stderr[-2000:]
    assert ("Exception ignored" in done.stderr) is (hook == "python's")  # the command's own hook says nothing
