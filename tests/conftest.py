"""Shared fixtures: the bundled sample, tiny frames, a temporary Prefect server and MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from servers import BIN, free_port, start, stop, wait_until

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "nyc_subway_covid.csv"
SEED_FORMAT_CONFIG = ROOT / "config" / "seed-format.toml"


def counting_history(days: int):
    """Days from 2021-01-01: travellers 100, 110, ..., cases 0, 1, 4, ..., day types 0, 1, 2, 0, ..."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=days),
            "travellers": np.arange(days, dtype=np.int64) * 10 + 100,
            "cases": np.arange(days, dtype=np.int64) ** 2,
            "day_type": np.arange(days, dtype=np.int64) % 3,
        }
    )


os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Two pytest workers share the machine: one thread each for TensorFlow's ops instead of both fighting over every core.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

# The files that take longest (minutes of servers and processes each) start first, so that the two workers
# (`-n 2 --dist loadfile`: a file's tests on one worker) end together instead of one waiting for the other.
LONGEST_FIRST = ["test_soak.py", "test_production.py", "test_live_accuracy.py", "test_reliability.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: every file's own order is kept


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (real API, SQLite) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def tmp_store_settings(tmp_path):
    """Settings whose MLflow store and outputs live under tmp_path; builds with overrides."""
    from tasks.config import load_settings

    def make(*overrides: str, config: Path | None = None):
        base = [f'mlflow.store_dir="{tmp_path / "mlruns"}"', f'output_dir="{tmp_path / "outputs"}"']
        return load_settings(config, [*base, *overrides], root=ROOT)

    return make


def start_prefect_server(home: Path, port: int | None = None, database_url: str | None = None):
    """`prefect server start` on `port` (a free one by default) with its own PREFECT_HOME; the process and the env that points at it.

    Started again with the same home and port, it is the same server restarted: its database is in the home
    (or at `database_url`, e.g. PostgreSQL's `postgresql+asyncpg://...`).
    """
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    server = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"], env, home / "server.log"
    )
    try:
        wait_until(
            lambda: httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=5).status_code == 200, 180, "the Prefect server", server
        )
    except BaseException:
        stop(server)
        raise
    return server, env


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory):
    """One real Prefect server for the session's end-to-end tests; the env that points at it."""
    server, env = start_prefect_server(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield env
    finally:
        stop(server)


@pytest.fixture(scope="session")
def postgres():
    """One throw-away PostgreSQL cluster for the session; `postgres.url(name)` makes a database on it."""
    from servers import PostgresCluster

    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()
