"""Faults with real processes, servers and storage: killed runs, MLflow down, overlapping
retrains, divergence, a full or read-only disk, and the security rules. Each test checks
that nothing stored was lost or changed and that the next run completes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SAMPLE
from servers import BIN, CLI, free_port, prefect_api, start, start_mlflow_server, stop, wait_for_deployment, wait_until

pytestmark = pytest.mark.integration  # real servers or processes

MODEL = "travel-forecast-faults"


def make_workspace(root: Path, extra: str = "", retrain_extra: str = "") -> Path:
    """A config with everything under `root`: the sample minus its last three days as the initial history, those days as files."""
    rows = pd.read_csv(SAMPLE, dtype=str)
    rows.iloc[:-3].to_csv(root / "initial.csv", index=False)
    (root / "days").mkdir()
    for i in (-3, -2, -1):
        rows.iloc[[i]].to_csv(root / "days" / f"{rows['date'].iloc[i]}.csv", index=False)
    config = root / "config.toml"
    config.write_text(
        f'output_dir = "{root / "out"}"\n'
        f'[data]\npath = "{root / "initial.csv"}"\n'
        # Faults, not peers: seasonal naive the one member beside the network and the one compared (AutoARIMA alone
        # fits for tens of seconds on the sample's 1,700 days, three times per LSTM fit).
        '[model]\nepochs = 2\nensemble = 1\ncombine_with = ["seasonal_naive"]\n[backtest]\ntest_days = 7\ncompare = []\n'
        f'[mlflow]\nstore_dir = "{root / "mlruns"}"\nregistered_model = "{MODEL}"\n{extra}'
        f'[retrain]\nincoming_dir = "{root / "incoming"}"\nhistory_path = "{root / "history.db"}"\n'
        "max_baseline_ratio = 100.0\nmax_peer_ratio = 100.0\n"  # two epochs are far from good: let the first model through
        f"{retrain_extra}"
    )
    return config


# Appended to a retrain that is stopped while it fits: its backtest fit then lasts seconds, not a fraction of one.
LONG_FIT = ["--set", "model.epochs=100", "--set", "model.early_stopping_patience=0"]


def arrive(root: Path, day: str) -> None:
    """One day's file lands (written whole, as `ingest` does)."""
    (root / "incoming").mkdir(exist_ok=True)
    (root / "days" / f"{day}.csv").rename(root / "incoming" / f"{day}.csv")


def cli(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def retrain(config: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return cli(["retrain", "--config", str(config), *extra], env)


def outcome(result: subprocess.CompletedProcess) -> str:
    """The command's own last line (MLflow prints its run links before it)."""
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def stored_days(root: Path) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{root / 'history.db'}")
    with engine.connect() as connection:
        return pd.read_sql("SELECT * FROM daily_history ORDER BY date", connection)


def registry(root: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def versions(root: Path) -> dict[str, dict[str, str]]:
    """Every registered version's tags."""
    return {str(v.version): v.tags for v in registry(root).search_model_versions(f"name='{MODEL}'")}


def runs(root: Path) -> list:
    client = registry(root)
    return client.search_runs([client.get_experiment_by_name("travel-forecast").experiment_id], max_results=1000)


def processes() -> dict[int, tuple[int, int]]:
    """Every process of this machine: pid -> (parent pid, session), from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):  # a process that ended meanwhile
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command: state, ppid, pgrp, session
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[3]))
    return table


def session_processes(session: int) -> list[str]:
    """Command lines of the processes still in a session (a command started with start_new_session leads its own)."""
    left = []
    for pid, (_, in_session) in processes().items():
        if in_session == session:
            with contextlib.suppress(OSError):
                left.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
    return left


def descendants(pid: int) -> list[int]:
    """Every process started under `pid`, whatever session or group it put itself in."""
    parents = {child: parent for child, (parent, _) in processes().items()}
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def champion(root: Path) -> str:
    return str(registry(root).get_model_version_by_alias(MODEL, "champion").version)


def kill_when(args: list[str], env: dict, marker: str, delay: float, log: Path, timeout: float = 600) -> str:
    """Start a CLI command, SIGKILL its whole process group `delay` s after `marker` shows in its output."""
    process = start([*CLI, *args], env, log)
    deadline = time.monotonic() + timeout
    try:
        while marker not in log.read_text():  # polled finely: registration takes half a second
            assert process.poll() is None and time.monotonic() < deadline, f"no '{marker}' in:\n{log.read_text()[-3000:]}"
            time.sleep(0.02)
        time.sleep(delay)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        stop(process)
    return log.read_text()


@pytest.fixture
def with_champion(tmp_path, prefect_env):
    """A workspace whose first retrain ran: history stored, v1 registered and champion."""
    config = make_workspace(tmp_path)
    first = retrain(config, prefect_env, "--init")
    assert first.returncode == 0, first.stderr[-3000:]
    assert champion(tmp_path) == "1"
    return tmp_path, config


def assert_next_run_completes(root: Path, config: Path, env: dict, day: str) -> None:
    """The next run, without --force, trains on the day an interrupted run stored and decides on it."""
    result = retrain(config, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert outcome(result).startswith(("promoted", "not promoted")), result.stdout
    newest = max(versions(root), key=int)
    assert "decision" in versions(root)[newest]
    assert [r.info.run_name for r in runs(root) if r.info.status == "RUNNING"] == []  # nothing aborted is shown running
    assert registry(root).get_run(registry(root).get_model_version(MODEL, newest).run_id).data.tags["data_through"] == day


@pytest.mark.parametrize(
    ("marker", "delay", "stage"),
    [
        ("MLflow run ", 1.0, "training"),  # start_tracking logged; the backtest fit is under way
        ("logging the model to MLflow run", 0.1, "registration"),  # inside log_model / register_model (~0.5 s)
        (f"registered {MODEL} version", 0.0, "decision"),  # a new version exists, the alias has not moved yet
    ],
)
def test_a_run_killed_mid_way_leaves_the_champion_and_history_and_the_next_run_completes(
    with_champion, prefect_env, marker, delay, stage
):
    root, config = with_champion
    arrive(root, "2024-11-12")
    before = stored_days(root)
    output = kill_when(["retrain", "--config", str(config)], prefect_env, marker, delay, root / f"killed-{stage}.log")
    assert not re.search(r"Flow run '[^']+' - Finished in state", output)  # killed, not finished
    # The day was committed before training began.
    assert stored_days(root)["date"].iloc[-1] == "2024-11-12" and len(stored_days(root)) == len(before) + 1
    # The alias is on v1 or on a version whose decision was recorded in full; never on a half-registered one.
    holder = champion(root)
    assert holder == "1" or versions(root)[holder].get("decision") == "promoted"
    if "Task run 'decide_champion" not in output:
        assert holder == "1" and all("decision" not in tags for v, tags in versions(root).items() if v != "1")
    if re.search(r"Task run 'mark_trained-\w+' - the history's", output):  # killed in the last milliseconds: nothing left to do
        assert outcome(retrain(config, prefect_env)).startswith("no new data")
    else:
        assert_next_run_completes(root, config, prefect_env, "2024-11-12")


@pytest.mark.parametrize(("stop", "said", "code"), [("SIGTERM", "SIGTERM", 143), ("SIGINT", "Ctrl-C", 130)])
def test_a_stopped_retrain_ends_its_mlflow_runs_as_killed_leaves_no_process_and_the_next_run_completes(
    with_champion, prefect_env, stop, said, code
):
    root, config = with_champion
    arrive(root, "2024-11-12")
    # No PREFECT_API_URL: the command starts Prefect's temporary server as its child, as on a user's first day.
    env = {k: v for k, v in prefect_env.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(root / "prefect-home")}
    log = root / f"{stop}.log"
    # As from a terminal: SIGINT handled (a test runner in the background may have it ignored, and children inherit that).
    process = subprocess.Popen(
        [*CLI, "retrain", "--config", str(config), *LONG_FIT],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_until(lambda: "MLflow run " in log.read_text(), 300, "training to start", process)
        time.sleep(1.0)  # the backtest fit is under way
        if stop == "SIGTERM":
            os.kill(process.pid, signal.SIGTERM)  # `kill PID`, a service manager's stop
        else:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole foreground group
        assert process.wait(timeout=120) == code, log.read_text()[-3000:]
        wait_until(lambda: not session_processes(process.pid), 30, "the command's child processes to end")
    finally:
        os.killpg(process.pid, signal.SIGKILL) if session_processes(process.pid) else None
    output = log.read_text()
    stopped = [line for line in output.splitlines() if line.startswith("retrain stopped: ")]  # then Prefect's exit lines
    assert stopped == [f"retrain stopped: {said}; its MLflow runs are marked KILLED, stored data is as of the last whole step"]
    assert "Traceback" not in output
    stopped_runs = [r for r in runs(root) if r.data.tags.get("pid") == str(process.pid)]  # the parent run, any child
    assert stopped_runs and {r.info.status for r in stopped_runs} == {"KILLED"}
    assert all(r.data.tags["failure"].startswith("stopped by") for r in stopped_runs), [r.data.tags for r in stopped_runs]
    assert champion(root) == "1" and stored_days(root)["date"].iloc[-1] == "2024-11-12"
    assert_next_run_completes(root, config, prefect_env, "2024-11-12")


def test_a_killed_ingest_leaves_the_history_as_it_was_and_the_file_in_the_landing_folder(tmp_path):
    import sqlalchemy as sa

    config = make_workspace(tmp_path)
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    ingest = [
        sys.executable,
        "-c",
        "from tasks.config import load_settings; from tasks.landing import ingest_landing; from pathlib import Path; "
        f"ingest_landing(load_settings(Path({str(config)!r}), []), init=True)",
    ]
    assert subprocess.run(ingest, cwd=ROOT, env=env, capture_output=True, timeout=120).returncode == 0  # starts the store
    before = stored_days(tmp_path)
    rows = pd.read_csv(SAMPLE, dtype=str).iloc[-3:]  # 2024-11-12 .. 2024-11-14 in one file
    rows.to_csv(tmp_path / "incoming" / "three.csv", index=False)
    # Make the write of the second day slow, so the kill lands inside the open transaction.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TRIGGER slow BEFORE INSERT ON daily_history WHEN NEW.date = '2024-11-13' BEGIN "
                "SELECT count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500000000) SELECT i FROM n); END"
            )
        )
    process = start(ingest, env, tmp_path / "ingest.log")
    try:
        journal = tmp_path / "history.db-journal"  # exists while a write transaction is open
        wait_until(lambda: journal.exists() and journal.stat().st_size > 0, 120, "the ingest transaction", process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        stop(process)
    pd.testing.assert_frame_equal(stored_days(tmp_path), before)
    assert (tmp_path / "incoming" / "three.csv").exists()
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TRIGGER slow"))
    assert subprocess.run(ingest, cwd=ROOT, env=env, capture_output=True, timeout=120).returncode == 0
    assert stored_days(tmp_path)["date"].iloc[-4:].tolist() == ["2024-11-11", "2024-11-12", "2024-11-13", "2024-11-14"]
    assert [p.name for p in (tmp_path / "incoming" / "processed").iterdir()] == ["three.csv"]


def retrain_together(configs: list[Path], env: dict, root: Path) -> list[str]:
    """Start a retrain per config at once; both succeed, one trains and decides, the other finds nothing new. Their logs."""
    runs = [start([*CLI, "retrain", "--config", str(c)], env, root / f"together-{i}.log") for i, c in enumerate(configs)]
    for process in runs:
        assert process.wait(timeout=600) == 0
    outputs = [(root / f"together-{i}.log").read_text() for i in range(len(configs))]
    finals = sorted(
        next(line for line in text.splitlines() if line.startswith(("promoted", "not promoted", "no new data")))
        for text in outputs
    )
    assert finals[0].startswith("no new data") and finals[1].startswith(("not promoted", "promoted")), finals
    return outputs


def test_two_retrains_started_together_run_one_after_the_other_and_train_once(with_champion, prefect_env):
    root, config = with_champion
    arrive(root, "2024-11-12")
    outputs = retrain_together([config, config], prefect_env, root)
    assert any("another retrain is running" in text for text in outputs)
    assert sorted(versions(root), key=int) == ["1", "2"]  # one registration
    days = stored_days(root)
    assert days["date"].is_unique and days["date"].iloc[-1] == "2024-11-12"


def test_retrains_on_two_machines_sharing_a_postgres_history_train_a_day_once(tmp_path, prefect_env, postgres):
    # Two landing folders (two machines, so two file locks), one PostgreSQL history store and one registry.
    url = postgres.url("shared_history")
    config = make_workspace(tmp_path, retrain_extra=f'history_url = "{url}"\n')
    first = retrain(config, prefect_env, "--init")
    assert first.returncode == 0, first.stderr[-3000:]
    other = tmp_path / "machine-b.toml"
    other.write_text(config.read_text().replace(str(tmp_path / "incoming"), str(tmp_path / "incoming-b")))
    (tmp_path / "incoming-b").mkdir()
    shutil.copy(tmp_path / "days" / "2024-11-12.csv", tmp_path / "incoming-b")  # the same delivery reaches both machines
    arrive(tmp_path, "2024-11-12")
    outputs = retrain_together([config, other], prefect_env, tmp_path)
    assert any("another retrain is running (the advisory lock 'travel-forecast retrain' of postgresql" in t for t in outputs)
    assert sorted(versions(tmp_path), key=int) == ["1", "2"]  # the day trained once
    assert not (tmp_path / "history.db").exists()  # everything went to PostgreSQL


def test_a_killed_holder_of_the_postgres_retrain_lock_frees_it_and_other_stores_never_wait(postgres):
    from tasks.history_store import AdvisoryLock

    url, elsewhere = postgres.url("locked_store"), postgres.url("other_store")
    hold = (
        f"from tasks.history_store import AdvisoryLock as L; l = L({url!r}, 'retrain'); print(l.acquire(0), flush=True); input()"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        lock = AdvisoryLock(url, "retrain")
        assert lock.acquire(timeout=0) is False
        started = time.monotonic()
        assert lock.acquire(timeout=1.5) is False
        assert time.monotonic() - started >= 1.5  # it waited the whole time
        other = AdvisoryLock(elsewhere, "retrain")
        assert other.acquire(timeout=0) is True  # a lock per store's database
        other.release()
        holder.kill()  # SIGKILL: no release, the server ends the session
        holder.wait(timeout=30)
        assert lock.acquire(timeout=30) is True
        lock.release()
        again = AdvisoryLock(url, "retrain")
        assert again.acquire(timeout=0) is True  # released, not kept by a pooled connection
        again.release()
    finally:
        holder.kill()


def test_mlflow_down_fails_the_run_clearly_keeps_the_data_and_the_next_run_trains_on_it(tmp_path, prefect_env):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    config = make_workspace(tmp_path, extra=f'tracking_uri = "{uri}"\nrequest_retries = 2\nrequest_backoff_seconds = 1\n')
    down = retrain(config, prefect_env, "--init")
    assert down.returncode == 1
    assert f"retrain stopped: MLflow tracking server {uri} did not answer after 2 retries" in down.stderr
    assert stored_days(tmp_path)["date"].iloc[-1] == "2024-11-11"  # the initial history is stored
    server = start_mlflow_server(
        f"sqlite:///{tmp_path / 'server.db'}",
        port,
        tmp_path / "mlflow.log",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
    )
    try:
        back = retrain(config, prefect_env)  # no --force: the stored days were never trained on
        assert back.returncode == 0, back.stderr[-3000:]
        assert outcome(back).startswith("promoted: 0 new day(s), 0 revised, 1717 stored by an earlier unfinished run"), (
            back.stdout
        )
        import mlflow

        version = mlflow.MlflowClient(tracking_uri=uri).get_model_version_by_alias(MODEL, "champion")
        assert str(version.version) == "1" and version.tags["decision"] == "promoted"
    finally:
        stop(server)


def test_a_diverging_or_far_worse_challenger_is_never_promoted_and_the_run_says_why(with_champion, prefect_env):
    root, config = with_champion
    runs_before = len(registry(root).search_runs([registry(root).get_experiment_by_name("travel-forecast").experiment_id]))
    diverged = retrain(config, prefect_env, "--force", "--set", "model.learning_rate=1e30")
    assert diverged.returncode == 1
    assert "retrain stopped: training diverged: loss is" in diverged.stderr
    assert sorted(versions(root)) == ["1"] and champion(root) == "1"
    failed = registry(root).search_runs(
        [registry(root).get_experiment_by_name("travel-forecast").experiment_id], "attributes.status = 'FAILED'"
    )
    assert len(failed) == 1 and failed[0].data.tags["failure"].startswith("TrainingDiverged: training diverged")
    assert runs_before + 1 == len(registry(root).search_runs([failed[0].info.experiment_id]))

    worse = retrain(config, prefect_env, "--force", "--set", "retrain.max_baseline_ratio=0.01")
    assert worse.returncode == 0 and outcome(worse).startswith("not promoted"), worse.stdout
    tags = versions(root)["2"]
    assert tags["decision"] == "not promoted" and "seasonal naive" in tags["decision_reason"]
    assert champion(root) == "1"
    metrics = registry(root).get_run(registry(root).get_model_version(MODEL, "2").run_id).data.metrics
    assert metrics["promoted"] == 0.0 and metrics["unseen_days"] == 0 and "champion_mae" not in tags  # v1 saw every day
    assert {"backtest_mae", "unseen_challenger_mae", "unseen_champion_mae", "unseen_seasonal_naive_mae"} <= set(metrics)


def test_a_challenger_that_loses_to_a_peer_is_refused_and_the_peer_promoted_instead_when_allowed(tmp_path, prefect_env):
    config = make_workspace(tmp_path)
    naive = ["--set", "model.kind=naive", "--set", "retrain.max_peer_ratio=1.0"]  # day-before is no match for a week-before
    refused = retrain(config, prefect_env, "--init", *naive, "--set", "retrain.allow_peer_champion=false")
    assert refused.returncode == 0 and outcome(refused).startswith("not promoted"), refused.stdout
    assert versions(tmp_path)["1"]["decision_reason"].startswith("loses to seasonal_naive on its backtest days (MAE ")
    assert versions(tmp_path)["1"]["best_peer"] == "seasonal_naive"
    assert registry(tmp_path).get_registered_model(MODEL).aliases == {}  # no champion rather than a bad one

    instead = retrain(config, prefect_env, "--force", *naive)
    assert instead.returncode == 0 and outcome(instead).startswith("promoted"), instead.stdout
    tags = versions(tmp_path)
    assert tags["2"]["kind"] == "naive" and tags["2"]["decision"] == "not promoted" and tags["2"]["best_peer"] == "seasonal_naive"
    assert tags["3"]["kind"] == "seasonal_naive" and tags["3"]["decision"] == "promoted" and champion(tmp_path) == "3"
    # The peer's version lives on its own child run of the training run, which holds its backtest.
    peer_run = registry(tmp_path).get_run(registry(tmp_path).get_model_version(MODEL, "3").run_id)
    assert peer_run.data.tags["mlflow.parentRunId"] == registry(tmp_path).get_model_version(MODEL, "2").run_id
    assert peer_run.data.tags["forecaster"] == "seasonal_naive" and "backtest_mae" in peer_run.data.metrics
    assert peer_run.info.status == "FINISHED"
    forecast = cli(["predict", "--config", str(config), "--days", "3"], prefect_env)
    assert forecast.returncode == 0, forecast.stderr[-3000:]


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB filesystem (tmpfs) for the store and the landing folder."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def landing_settings(root: Path):
    from tasks.config import load_settings

    return load_settings(make_workspace(root), [])


def test_a_full_disk_stops_the_ingest_clearly_and_corrupts_nothing(small_disk):
    from tasks.history_store import StoreUnwritable
    from tasks.landing import ingest_landing

    settings = landing_settings(small_disk)
    ingest_landing(settings, init=True)
    before = stored_days(small_disk)
    arrive(small_disk, "2024-11-12")
    filler = small_disk / "filler"
    with filler.open("wb") as out:  # fill the disk to the last block
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    with pytest.raises(
        StoreUnwritable,
        match=rf"history store sqlite:///{small_disk}/history.db cannot be written \(.*full.*\): nothing was changed",
    ):
        ingest_landing(settings, init=True)
    filler.unlink()
    pd.testing.assert_frame_equal(stored_days(small_disk), before)
    assert (small_disk / "incoming" / "2024-11-12.csv").exists()
    assert ingest_landing(settings, init=True).days_added == 1


def test_a_read_only_store_stops_the_ingest_clearly_and_corrupts_nothing(small_disk, tmp_path):
    from tasks.history_store import StoreUnwritable
    from tasks.landing import ingest_landing

    settings = landing_settings(small_disk)
    ingest_landing(settings, init=True)
    before = stored_days(small_disk)
    arrive(small_disk, "2024-11-12")
    # The same store seen through a read-only mount, as on a read-only volume.
    view = tmp_path / "read-only"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(small_disk), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        paths = {"history_path": view / "history.db", "incoming_dir": view / "incoming"}
        read_only = settings.model_copy(update={"retrain": settings.retrain.model_copy(update=paths)})
        with pytest.raises(
            StoreUnwritable,
            match=rf"history store sqlite:///{view}/history.db cannot be written \(.*read.*only.*\): nothing was changed",
        ):
            ingest_landing(read_only)
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)
    pd.testing.assert_frame_equal(stored_days(small_disk), before)
    assert (small_disk / "incoming" / "2024-11-12.csv").exists()
    assert ingest_landing(settings, init=True).days_added == 1


def test_landing_names_cannot_leave_the_folder_and_links_are_not_followed(tmp_path):
    from tasks.landing import ingest_landing, landing_name

    for name in ("../escape.csv", "/etc/cron.d/x.csv", "a/b.csv", "..\\escape.csv", ".hidden.csv", "data.txt"):
        with pytest.raises(ValueError, match=r"a landing file name must be a plain name ending in \.csv"):
            landing_name(name)
    assert landing_name("2024-11-12.csv") == "2024-11-12.csv"

    settings = landing_settings(tmp_path)
    ingest_landing(settings, init=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    (tmp_path / "incoming" / "link.csv").symlink_to(secret)
    result = ingest_landing(settings, init=True)
    assert [(f.name, f.outcome, f.reason) for f in result.files] == [("link.csv", "rejected", "not a regular file")]
    report = (tmp_path / "incoming" / "rejected" / "link.csv.report.csv").read_text()
    assert "hunter2" not in report and "not a regular file" in report
    assert secret.read_text() == "password=hunter2\n"


def test_ingest_command_never_overwrites_a_waiting_file(tmp_path):
    config = make_workspace(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    day = tmp_path / "days" / "2024-11-12.csv"
    assert cli(["ingest", str(day), "--config", str(config)], env).returncode == 0
    waiting = (tmp_path / "incoming" / "2024-11-12.csv").read_text()
    day.write_text(day.read_text().replace(",0,", ",1,"))
    again = cli(["ingest", str(day), "--config", str(config)], env)
    assert again.returncode == 1 and "already in the landing folder and not yet ingested" in again.stderr
    assert (tmp_path / "incoming" / "2024-11-12.csv").read_text() == waiting


def test_only_models_stored_in_the_configured_experiment_are_loaded(with_champion, prefect_env):
    root, config = with_champion
    # A pyfunc outside the store whose loader would leave a mark if it ever ran.
    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mark_on_load\n    code: code\n")
    (foreign / "code").mkdir()
    (foreign / "code" / "mark_on_load.py").write_text(f"open({str(root / 'MARK')!r}, 'w').write('ran')\n")
    client = registry(root)
    planted = client.create_model_version(MODEL, str(foreign))
    client.set_registered_model_alias(MODEL, "champion", planted.version)
    result = cli(["predict", "--config", str(config)], prefect_env)
    assert result.returncode == 1
    assert f"predict stopped: model '{MODEL}' v{planted.version} is stored at" in result.stderr
    assert "refusing to load it" in result.stderr
    assert not (root / "MARK").exists()


def listening_address(port: int) -> str:
    """The local address a TCP port listens on, from /proc/net/tcp (e.g. 127.0.0.1)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if int(local_port, 16) == port and state == "0A":  # LISTEN
            return ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
    raise AssertionError(f"nothing listens on port {port}")


def test_the_servers_the_readme_starts_listen_on_localhost_only(tmp_path):
    # `prefect server start` exactly as the README runs it (its port moved out of the way).
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/prefect server start " in readme
    # `make ui`, as the Makefile runs it (the port moved the same way).
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "ui"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    ui = next(line for line in printed.splitlines() if " ui --backend-store-uri " in line)
    assert "--host 127.0.0.1" in ui
    ui_port = free_port()
    ui = ui.replace("--port 5000", f"--port {ui_port}").replace(f"sqlite:///{ROOT}/mlruns/", f"sqlite:///{tmp_path}/")
    prefect = start([str(BIN / "prefect"), "server", "start"], env, tmp_path / "prefect.log")  # started after the checks
    mlflow_ui = start(ui.split(), os.environ.copy(), tmp_path / "ui.log")  # that can fail: never left running
    try:
        import httpx

        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200, 180, "prefect server", prefect
        )
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{ui_port}/health", timeout=5).status_code == 200, 240, "mlflow ui", mlflow_ui
        )
        assert listening_address(port) == "127.0.0.1"
        assert listening_address(ui_port) == "127.0.0.1"
    finally:
        stop(prefect)
        stop(mlflow_ui)


def test_the_served_champion_forecasts_over_http_and_refuses_short_input_with_the_reason(with_champion, prefect_env):
    import httpx

    root, config = with_champion
    port = free_port()
    env = {k: v for k, v in prefect_env.items() if k != "PATH"} | {"PATH": "/usr/bin:/bin"}  # the venv not activated
    server = start([*CLI, "serve-model", "--config", str(config), "--port", str(port)], env, root / "serve-model.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/ping", timeout=5).status_code == 200, 180, "the model server", server)
        recent = pd.read_csv(SAMPLE).tail(70)[["date", "riders", "cumulative_cases", "day_type"]]
        body = {"dataframe_split": recent.to_dict(orient="split", index=False), "params": {"days": 3}}
        answer = httpx.post(f"{url}/invocations", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        forecast = pd.DataFrame(answer.json()["predictions"])
        assert forecast["date"].tolist() == ["2024-11-15", "2024-11-16", "2024-11-17"]
        assert forecast["forecast"].between(1e5, 2e7).all() and (forecast["upper_95"] > forecast["forecast"]).all()
        short = {"dataframe_split": recent.tail(5).to_dict(orient="split", index=False), "params": {"days": 3}}
        refused = httpx.post(f"{url}/invocations", json=short, timeout=60)
        assert refused.status_code == 400 and "5 day(s) of history given" in refused.json()["message"], refused.text
    finally:
        stop(server)
    assert "serving models:/travel-forecast-faults@champion" in (root / "serve-model.log").read_text()


def test_a_prefect_server_gone_mid_run_stops_the_run_before_it_registers_and_the_next_run_completes(with_champion, prefect_env):
    from conftest import start_prefect_server

    root, config = with_champion
    arrive(root, "2024-11-12")
    home = root / "own-prefect"
    home.mkdir()
    server, env = start_prefect_server(home)  # a server of its own, to stop mid-run
    log = root / "server-gone.log"
    process = start([*CLI, "retrain", "--config", str(config), *LONG_FIT], env, log)
    try:
        wait_until(lambda: "MLflow run " in log.read_text(), 300, "training to start", process)
        stop(server)  # the Prefect server goes away while the backtest fits
        started = time.monotonic()
        assert process.wait(timeout=600) == 1, log.read_text()[-3000:]
        waited = time.monotonic() - started
    finally:
        stop(process)
        stop(server)
    stopped = [line for line in log.read_text().splitlines() if line.startswith("retrain stopped: ")]
    assert len(stopped) == 1 and stopped[0].startswith(
        f"retrain stopped: the Prefect API at {env['PREFECT_API_URL']} does not answer"
    )
    assert "Traceback" not in log.read_text()  # Prefect's failed-task lines keep the reason, without the stack
    assert sorted(versions(root)) == ["1"] and champion(root) == "1"  # nothing registered, the champion kept
    stopped_runs = [r for r in runs(root) if r.data.tags.get("pid") == str(process.pid)]
    training = [r for r in stopped_runs if "mlflow.parentRunId" not in r.data.tags]  # children that completed stay FINISHED
    assert len(training) == 1 and training[0].info.status == "FAILED" and "RUNNING" not in {r.info.status for r in stopped_runs}
    assert training[0].data.tags["failure"].startswith(("ConnectError", "PrefectUnreachable"))
    print(f"the command ended {waited:.0f} s after the server stopped")
    assert_next_run_completes(root, config, prefect_env, "2024-11-12")


def test_a_deployment_run_whose_processes_are_killed_is_marked_crashed_by_the_zombie_automation(with_champion, prefect_env):
    root, config = with_champion
    api = prefect_env["PREFECT_API_URL"]
    serve = ["serve", "--config", str(config), "--set", "retrain.deployment=zombie"]
    serve += ["--set", "model.epochs=5000", "--set", "model.early_stopping_patience=0"]  # still training when killed
    server = start([*CLI, *serve], prefect_env, root / "serve-zombie.log")
    try:
        deployment = wait_for_deployment(api, "retrain/zombie", server)
        automations = prefect_api("POST", f"{api}/automations/filter", {})
        assert "travel-forecast: crash runs without a heartbeat" in [a["name"] for a in automations]
        run = prefect_api("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", {"parameters": {"force": True}})
        state = lambda: prefect_api("GET", f"{api}/flow_runs/{run['id']}")["state_type"]
        wait_until(lambda: state() == "RUNNING", 180, "the deployment run to start", server)
        time.sleep(40)  # at least one heartbeat sent
        for pid in [server.pid, *descendants(server.pid)]:  # as when the machine dies: nobody reports anything
            os.kill(pid, signal.SIGKILL)
        server.wait(timeout=30)
        assert state() == "RUNNING"  # what it stayed for good before
        wait_until(lambda: state() == "CRASHED", 240, "the automation to mark the run Crashed")
    finally:
        stop(server)
    message = prefect_api("GET", f"{api}/flow_runs/{run['id']}")["state"]["message"]
    assert "no heartbeat for 90 s" in message
