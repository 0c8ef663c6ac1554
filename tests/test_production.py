"""The production configuration end to end, every part real and on loopback: PostgreSQL (Prefect's
database, MLflow's backend store and the history store), `prefect server`, `mlflow server
--serve-artifacts`, the retrain deployment on a process work pool and two `prefect worker`s."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import ROOT, SAMPLE, start_prefect_server
from servers import BIN, CLI, flow_runs, free_port, start, start_mlflow_server, stop, wait_for_deployment, wait_until

pytestmark = pytest.mark.integration  # real servers and processes

MODEL = "travel-forecast-production"


@contextmanager
def deployed_on_two_workers(
    tmp_path: Path, config: Path, prefect_db: str, mlflow_db: str, mlflow_port: int, pool: str, name: str
):
    """Prefect and `mlflow server --serve-artifacts` on PostgreSQL, `travel-forecast deploy` of `config` to `pool`,
    and two `prefect worker`s of it; yields the env pointing at Prefect and the deployment `name`, then stops them."""
    (tmp_path / "prefect-home").mkdir()
    prefect_server, env = start_prefect_server(tmp_path / "prefect-home", database_url=prefect_db.replace("+psycopg", "+asyncpg"))
    processes = [prefect_server]
    try:
        artifacts = ("--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts"))
        processes.append(start_mlflow_server(mlflow_db, mlflow_port, tmp_path / "mlflow.log", *artifacts))
        deployed = subprocess.run(
            [*CLI, "deploy", "--config", str(config), "--pool", pool], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert f"prefect deployment run {name} --param init=true" in deployed.stdout
        workers = [
            start([str(BIN / "prefect"), "worker", "start", "--pool", pool], env, tmp_path / f"worker-{i}.log") for i in (1, 2)
        ]
        processes += workers
        yield env, wait_for_deployment(env["PREFECT_API_URL"], name, workers[0])
    finally:
        for process in reversed(processes):
            stop(process)


def completed(api: str, deployment_id: str, count: int):
    """A check for wait_until: the deployment's runs are `count` COMPLETED ones (failing at once on a FAILED or CRASHED)."""

    def check():
        states = [r["state"]["type"] for r in flow_runs(api, deployment_id) if r["state"]["type"] != "SCHEDULED"]
        assert "FAILED" not in states and "CRASHED" not in states, states
        return states == ["COMPLETED"] * count

    return check


def scalar(url: str, query: str):
    with sa.create_engine(url, poolclass=sa.pool.NullPool).connect() as connection:
        return connection.execute(sa.text(query)).scalar_one()


def test_retrains_run_on_process_workers_against_postgres_backed_servers(tmp_path, postgres):
    prefect_db, mlflow_db, history_db = (postgres.url(name) for name in ("prefect", "mlflow", "history"))
    mlflow_port = free_port()
    rows = pd.read_csv(SAMPLE, dtype=str)
    rows.iloc[:-2].to_csv(tmp_path / "initial.csv", index=False)
    rows.iloc[-2:-1].to_csv(tmp_path / "2024-11-13.csv", index=False)
    rows.iloc[-1:].to_csv(tmp_path / "2024-11-14.csv", index=False)
    config = tmp_path / "production.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "out"}"\n'
        f'[data]\npath = "{tmp_path / "initial.csv"}"\n'
        # Servers, not peers: seasonal naive the one member beside the network (AutoARIMA fits for tens of seconds on 1,700 days).
        '[model]\nepochs = 2\nensemble = 1\ncombine_with = ["seasonal_naive"]\n[backtest]\ntest_days = 7\ncompare = []\n'
        f'[mlflow]\ntracking_uri = "http://127.0.0.1:{mlflow_port}"\nregistered_model = "{MODEL}"\n'
        f'[retrain]\nincoming_dir = "{tmp_path / "incoming"}"\nhistory_url = "{history_db}"\n'
        "max_baseline_ratio = 100.0\nmax_peer_ratio = 100.0\n"  # two epochs are far from good: let the first model through
    )
    servers = deployed_on_two_workers(tmp_path, config, prefect_db, mlflow_db, mlflow_port, "production", "retrain/daily")
    with servers as (env, deployment):
        api = env["PREFECT_API_URL"]
        assert deployment["work_pool_name"] == "production" and deployment["parameters"]["settings"]["retrain"]["history_url"]
        first = subprocess.run(
            [str(BIN / "prefect"), "deployment", "run", "retrain/daily", "--param", "init=true", "--watch"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        arrived = subprocess.run(
            [*CLI, "ingest", str(tmp_path / "2024-11-13.csv"), "--config", str(config)], cwd=ROOT, env=env, capture_output=True
        )
        assert arrived.returncode == 0, arrived.stderr[-3000:]
        wait_until(completed(api, deployment["id"], 2), 900, "the event-triggered retrain on a worker")
        # The next day lands and two runs are asked for at once: the two workers never train it twice.
        (tmp_path / "incoming").mkdir(exist_ok=True)
        (tmp_path / "2024-11-14.csv").rename(tmp_path / "incoming" / "2024-11-14.csv")
        for _ in range(2):
            asked = subprocess.run(
                [str(BIN / "prefect"), "deployment", "run", "retrain/daily"], cwd=ROOT, env=env, capture_output=True, text=True
            )
            assert asked.returncode == 0, asked.stderr[-3000:]
        wait_until(completed(api, deployment["id"], 4), 900, "two retrains asked for at once")

        # Each store holds what it should, in PostgreSQL.
        assert scalar(prefect_db, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'") == 4
        assert scalar(history_db, "SELECT max(date) FROM daily_history").isoformat() == "2024-11-14"
        assert scalar(history_db, "SELECT count(*) FROM trainings") == 3  # init, the event's day, the last day once
        assert scalar(mlflow_db, f"SELECT count(*) FROM model_versions WHERE name = '{MODEL}'") == 3
        champion = scalar(
            mlflow_db, f"SELECT version FROM registered_model_aliases WHERE name = '{MODEL}' AND alias = 'champion'"
        )
        # The models' files went through the tracking server into its artifact store, not to the workers' disks.
        assert any(p.name == "MLmodel" for p in (tmp_path / "artifacts").rglob("MLmodel"))
        assert {r["work_pool_name"] for r in flow_runs(api, deployment["id"]) if r["state"]["type"] == "COMPLETED"} == {
            "production"
        }
        predicted = subprocess.run(
            [*CLI, "predict", "--days", "3", "--config", str(config)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        forecast = pd.read_csv(next((tmp_path / "out").glob("forecast-*.csv")))
        assert forecast["date"].tolist() == ["2024-11-15", "2024-11-16", "2024-11-17"]
        assert (forecast["model_version"].astype(str) == str(champion)).all()


def test_deploy_without_a_prefect_server_says_so_and_deploys_nothing():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    result = subprocess.run([*CLI, "deploy"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "deploy stopped: PREFECT_API_URL is not set; a work pool lives on a Prefect server"


def test_series_retrain_on_a_worker_with_dask_and_a_postgres_history_train_each_series_once(tmp_path, postgres):
    """Many series: each series' history in its own schema of one PostgreSQL database, its own advisory lock,
    the deployment run's series on a 2-worker Dask LocalCluster; a file for one series retrains it alone."""
    from test_series import long_rows

    prefect_db, mlflow_db, history_db = (postgres.url(name) for name in ("prefect_s", "mlflow_s", "history_s"))
    mlflow_port = free_port()
    rows = long_rows({"bus": 90, "lirr": 90})
    rows[rows["date"] < "2024-11-13"].to_csv(tmp_path / "initial.csv", index=False)
    config = tmp_path / "modes.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "out"}"\n'
        f'[data]\npath = "{tmp_path / "initial.csv"}"\nseries_column = "series"\n'
        "[model]\nepochs = 2\nensemble = 1\n[backtest]\ntest_days = 7\ncompare = []\n"
        f'[mlflow]\ntracking_uri = "http://127.0.0.1:{mlflow_port}"\nregistered_model = "modes"\n'
        f'[retrain]\nincoming_dir = "{tmp_path / "incoming"}"\nhistory_url = "{history_db}"\n'
        "max_baseline_ratio = 100.0\nmax_peer_ratio = 100.0\n"
        "[scale]\nworkers = 2\n"
    )
    servers = deployed_on_two_workers(tmp_path, config, prefect_db, mlflow_db, mlflow_port, "series", "retrain-series/daily")
    with servers as (env, deployment):
        api = env["PREFECT_API_URL"]
        run = [str(BIN / "prefect"), "deployment", "run", "retrain-series/daily"]
        first = subprocess.run(
            [*run, "--param", "init=true", "--watch"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

        # A day of one series arrives: its event retrains that series alone.
        day = lambda series, date: rows[(rows["series"] == series) & (rows["date"] == date)].drop(columns="series")
        day("bus", "2024-11-13").to_csv(tmp_path / "bus__2024-11-13.csv", index=False)
        ingest = [*CLI, "ingest", str(tmp_path / "bus__2024-11-13.csv"), "--config", str(config)]
        arrived = subprocess.run(ingest, cwd=ROOT, env=env, capture_output=True, text=True)
        assert arrived.returncode == 0 and "the served deployment starts a retrain run of bus" in arrived.stdout, arrived.stderr
        wait_until(completed(api, deployment["id"], 2), 900, "the event-triggered retrain of bus")
        # The next day of both lands, and two runs are asked for at once (two workers): no series is trained twice.
        for series in ("bus", "lirr"):
            (tmp_path / "incoming" / series).mkdir(parents=True, exist_ok=True)
            days = ["2024-11-14"] if series == "bus" else ["2024-11-13", "2024-11-14"]
            pd.concat([day(series, d) for d in days]).to_csv(tmp_path / "incoming" / series / f"{series}__next.csv", index=False)
        for _ in range(2):
            assert subprocess.run(run, cwd=ROOT, env=env, capture_output=True).returncode == 0
        wait_until(completed(api, deployment["id"], 4), 900, "two series retrains asked for at once")

        for series, trainings in (("bus", 3), ("lirr", 2)):  # bus: init, its event, the last day once; lirr: init, once
            assert scalar(history_db, f"SELECT max(date) FROM series_{series}.daily_history").isoformat() == "2024-11-14"
            assert scalar(history_db, f"SELECT count(*) FROM series_{series}.trainings") == trainings
            assert scalar(mlflow_db, f"SELECT count(*) FROM model_versions WHERE name = 'modes-{series}'") == trainings
        # Every series' retrain ran as a task on the run's Dask cluster: 2 at init, bus alone, 2 and 2.
        assert "LocalCluster" in "".join((tmp_path / f"worker-{i}.log").read_text() for i in (1, 2))
        task_runs = "SELECT count(*) FROM task_run WHERE name IN ('retrain-bus', 'retrain-lirr') AND state_type = 'COMPLETED'"
        assert scalar(prefect_db, task_runs) == 2 + 1 + 2 + 2
        predicted = subprocess.run(
            [*CLI, "predict", "--days", "2", "--config", str(config)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        forecast = pd.read_csv(next((tmp_path / "out").glob("forecast-*.csv")))
        assert forecast[["series", "date"]].values.tolist() == [
            ["bus", "2024-11-15"],
            ["bus", "2024-11-16"],
            ["lirr", "2024-11-15"],
            ["lirr", "2024-11-16"],
        ]
