"""Real servers and CLI processes for tests: free ports, start/stop in process groups, polling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def prefect_api(method: str, url: str, body: dict | None = None, patience: float = 60):
    """The JSON answer of a Prefect API call, asked again while the server answers 503.

    The server answers 503 while its SQLite database is locked by another writer (the serving process
    heartbeating, an automation firing); Prefect's own client retries it, so a test asking by hand does too.
    """
    deadline = time.monotonic() + patience
    while True:
        answer = httpx.request(method, url, json=body, timeout=10)
        if answer.status_code != 503 or time.monotonic() > deadline:
            answer.raise_for_status()
            return answer.json()
        time.sleep(float(answer.headers.get("Retry-After", 1)))


def flow_runs(api: str, deployment_id: str) -> list[dict]:
    """Every flow run of a deployment, oldest first."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return prefect_api("POST", f"{api}/flow_runs/filter", body)


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


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise AssertionError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/pg_ctl): apt install postgresql")
    return found[-1].parent


def _as_unprivileged(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PostgresCluster:
    """A throw-away PostgreSQL cluster on a free loopback port (initdb, pg_ctl), trust auth, stopped by `stop`."""

    def __init__(self):
        # Directly under /tmp: pytest's own temporary folders are closed to the postgres user.
        directory = Path(tempfile.mkdtemp(prefix="travel-forecast-postgres-"))
        self.directory, self.port, self.bin = directory, free_port(), _postgres_bin()
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        data = directory / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "server.log"), "-w", "start")

    @staticmethod
    def _run(*args: str) -> None:
        subprocess.run(_as_unprivileged(list(args)), check=True, capture_output=True, text=True)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL of a new database on the cluster."""
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", database)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
