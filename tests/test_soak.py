"""A month of unattended operation, compressed: 30 daily files through `ingest` into the served
deployment, with a Prefect server restart, a service stop (SIGTERM) mid-retrain and a file sent
twice among them. The end state is checked as an operator would after a month away."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import SAMPLE, start_prefect_server
from servers import CLI, flow_runs, prefect_api, start, stop, wait_for_deployment, wait_until
from test_reliability import cli, descendants, registry, runs, session_processes, stored_days, versions

pytestmark = pytest.mark.integration  # real servers and processes

MODEL = "travel-forecast-faults"  # what test_reliability's helpers read
DAYS = 30
RESTART_BEFORE, STOP_DURING, SENT_TWICE = 8, 17, 24  # the days the faults fall on (1-based)
FIT_STARTS = "Task run 'fit_forecaster"  # the served log's lines of a final fit, from its first one
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def soak_workspace(root: Path) -> tuple[Path, list[str]]:
    """The sample minus its last 30 days as the initial history; those days as one file each, and a small fast model."""
    rows = pd.read_csv(SAMPLE, dtype=str)
    rows.iloc[:-DAYS].to_csv(root / "initial.csv", index=False)
    (root / "days").mkdir()
    days = list(rows["date"].iloc[-DAYS:])
    for i, day in enumerate(days):
        rows.iloc[[len(rows) - DAYS + i]].to_csv(root / "days" / f"{day}.csv", index=False)
    config = root / "config.toml"
    config.write_text(
        f'output_dir = "{root / "out"}"\n'
        f'[data]\npath = "{root / "initial.csv"}"\n'
        "[model]\nepochs = 3\nensemble = 1\nlstm_units = [8]\ndense_units = [8]\ncombine_with = []\n"
        "[backtest]\ntest_days = 7\ncompare = []\n"
        f'[mlflow]\nstore_dir = "{root / "mlruns"}"\nregistered_model = "{MODEL}"\n'
        f'[retrain]\nincoming_dir = "{root / "incoming"}"\nhistory_path = "{root / "history.db"}"\n'
        'deployment = "soak"\ncron = "0 0 1 1 *"\n'  # runs come from the files, not the clock
        "max_baseline_ratio = 100.0\nmax_peer_ratio = 100.0\n"  # three epochs of a tiny network: let models through
    )
    return config, days


def asked_runs(api: str, deployment_id: str) -> list[dict]:
    """The deployment's runs that started or were asked for, oldest first (not the schedule's future ones)."""
    found = flow_runs(api, deployment_id)
    return [r for r in found if r["state_type"] != "SCHEDULED" or r["parameters"].get("trigger") != "schedule"]


def wait_for_runs(api: str, deployment_id: str, count: int, what: str, process=None) -> list[dict]:
    """The deployment's flow runs once `count` of them have ended and none is still going."""

    def ended() -> list[dict]:
        found = asked_runs(api, deployment_id)
        done = [r for r in found if r["state_type"] in FINAL_STATES]
        return found if len(done) >= count and len(done) == len(found) else []

    return wait_until(ended, 600, what, process)


def test_thirty_days_of_files_through_the_served_deployment_with_a_restart_a_stop_and_a_resent_file(tmp_path):
    started = time.monotonic()
    config, days = soak_workspace(tmp_path)
    home = tmp_path / "prefect-home"
    home.mkdir()
    server, env = start_prefect_server(home)
    api, port = env["PREFECT_API_URL"], httpx.URL(env["PREFECT_API_URL"]).port
    serve_args = [*CLI, "serve", "--config", str(config)]
    served = None
    try:
        seeded = cli(["retrain", "--config", str(config), "--init"], env)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        served = start(serve_args, env, tmp_path / "serve-1.log")
        deployment = wait_for_deployment(api, "retrain/soak", served)["id"]
        expected_runs = 0
        for number, day in enumerate(days, start=1):
            if number == RESTART_BEFORE:  # the Prefect server restarts; the served deployment rides it out
                stop(server)
                time.sleep(5)
                server, env = start_prefect_server(home, port)
            fits_logged = (tmp_path / "serve-1.log").read_text().count(FIT_STARTS)
            dropped = cli(["ingest", str(tmp_path / "days" / f"{day}.csv"), "--config", str(config)], env)
            assert dropped.returncode == 0 and "announced as" in dropped.stdout, dropped.stdout + dropped.stderr[-2000:]
            expected_runs += 1
            if number == STOP_DURING:  # `systemctl stop`: SIGTERM to every process of the service, mid-training
                # The final fit (the backtest reuses an earlier version's from day 7 on) has begun; its MLflow run is open.
                fitting = lambda before=fits_logged: (tmp_path / "serve-1.log").read_text().count(FIT_STARTS) > before
                wait_until(fitting, 300, "the final fit to start")
                time.sleep(0.3)  # in the fit, which with registration keeps the run open for seconds
                for pid in [served.pid, *descendants(served.pid)]:
                    os.kill(pid, signal.SIGTERM)
                served.wait(timeout=120)
                wait_until(lambda pid=served.pid: not session_processes(pid), 60, "the service's processes to end")
                stopped = wait_for_runs(api, deployment, expected_runs, "the stopped run to end")[-1]
                assert stopped["state_type"] in {"CRASHED", "CANCELLED"}, stopped["state"]
                served = start(serve_args, env, tmp_path / "serve-2.log")  # the service starts again
                wait_for_deployment(api, "retrain/soak", served)
                # The operator runs the deployment once by hand (`prefect deployment run retrain/soak`).
                prefect_api("POST", f"{api}/deployments/{deployment}/create_flow_run", {})
                expected_runs += 1
            ended = wait_for_runs(api, deployment, expected_runs, f"day {number}'s retrain", served)
            assert ended[-1]["state_type"] == "COMPLETED", (day, ended[-1]["state"])
            if number == SENT_TWICE:  # the same day again under another name: reported, not trained twice
                again = tmp_path / f"{day}-resent.csv"
                again.write_bytes((tmp_path / "incoming" / "processed" / f"{day}.csv").read_bytes())
                assert cli(["ingest", str(again), "--config", str(config)], env).returncode == 0
                expected_runs += 1
                wait_for_runs(api, deployment, expected_runs, "the resent file's retrain", served)
                assert (tmp_path / "incoming" / "processed" / again.name).exists()
        left_in_prefect = [r["state_type"] for r in asked_runs(api, deployment) if r["state_type"] not in FINAL_STATES]
        states = [r["state_type"] for r in asked_runs(api, deployment)]
        stop(served)
        wait_until(lambda: not session_processes(served.pid), 60, "the service's processes to end")
    finally:
        for process in (served, server):
            if process is not None:
                stop(process)
    wall = time.monotonic() - started

    # 30 stored days after the seeded history, the sample's whole series.
    history = stored_days(tmp_path)
    assert list(history["date"].iloc[-DAYS:]) == days and len(history) == len(pd.read_csv(SAMPLE))
    # One decision per day: a registered version trained through each day, its decision recorded.
    decided = {tags["data_through"]: tags["decision"] for tags in _version_tags(tmp_path) if "data_through" in tags}
    assert sorted(decided) == days and set(decided.values()) <= {"promoted", "not promoted"}
    assert len(versions(tmp_path)) == DAYS + 1  # the seeded v1, then one a day: nothing trained twice
    # Nothing left running: Prefect (one run a day, the stopped one, the resent file's), MLflow, processes.
    assert left_in_prefect == [] and len(states) == DAYS + 2 and states.count("COMPLETED") == DAYS + 1, states
    assert [r.info.run_name for r in runs(tmp_path) if r.info.status == "RUNNING"] == []
    killed = [r for r in runs(tmp_path) if r.info.status == "KILLED"]
    assert killed and all(r.data.tags["failure"].startswith("stopped by") for r in killed)
    # The served runs' logs are ours: no TensorFlow start-up lines, no MLflow registration chatter.
    served_logs = "".join(log.read_text() for log in tmp_path.glob("serve-*.log"))
    assert "oneDNN" not in served_logs and "Creating a new version" not in served_logs
    print(f"soak: {DAYS} days in {wall / 60:.1f} min")


def _version_tags(root: Path) -> list[dict[str, str]]:
    """Each registered version's tags with its run's data_through."""
    client = registry(root)
    return [
        v.tags | {"data_through": client.get_run(v.run_id).data.tags["data_through"]}
        for v in client.search_model_versions(f"name='{MODEL}'", max_results=1000)
        if str(v.version) != "1"
    ]
