"""Real servers and CLI processes for tests: free ports, start/stop in process groups, polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "flows.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: process exited with {process.returncode}")
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_deployment(api: str, name: str, process: subprocess.Popen, timeout: float = 180) -> dict:
    """The deployment `flow/deployment` once the serving process has registered it with the Prefect API."""
    return wait_until(
        lambda: (r := httpx.get(f"{api}/deployments/name/{name}", timeout=5)).status_code == 200 and r.json(),
        timeout,
        f"the {name} deployment",
        process,
    )


def flow_runs(api: str, deployment_id: str) -> list[dict]:
    """Every flow run of a deployment, oldest first."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """A server in its own process group, its output in `log`."""
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def start_mlflow_server(store: str, port: int, log: Path, *options: str) -> subprocess.Popen:
    """`mlflow server` on a SQLite store, one worker, on 127.0.0.1:port; returns once it answers /health."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    args = [str(BIN / "mlflow"), "server", "--backend-store-uri", store, *options]
    server = start([*args, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env, log)
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200, 240, "mlflow server", server
        )
    except AssertionError:
        stop(server)
        raise
    return server
