"""Shared fixtures: the bundled sample, tiny frames, a temporary Prefect server and MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "nyc_subway_covid.csv"
SEED_FORMAT_CONFIG = ROOT / "config" / "seed-format.toml"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
