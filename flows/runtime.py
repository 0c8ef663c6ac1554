"""Prefect runtime tuning for flows started from the command line (not deployments)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

from tasks.config import ScaleConfig
from tasks.native_output import import_keras

# What each one-off flow command imports; TensorFlow only where a network is always fitted or loaded.
FLOW_IMPORTS = {
    "train": ["flows.train", "keras"],
    "backtest": ["flows.backtest", "keras"],
    "retrain": ["flows.retrain"],  # a run with no new data never loads TensorFlow
    "predict": ["flows.predict", "keras"],
}


# Prefect waits 20 s for its temporary server, which starts here beside TensorFlow's import. On a busy machine that
# was too little: the timed-out server came up anyway and outlived the command (the stop, Prefect 3.9.1's
# SubprocessASGIServer.stop, ends only the newest), the flow run's second start failed to bind its port, and the
# command printed both tracebacks. A user's larger setting still wins.
TEMPORARY_SERVER_STARTUP_SECONDS = 120


def start_temporary_server() -> threading.Thread | None:
    """Without PREFECT_API_URL, start Prefect's temporary server now, in the background (~3 s)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if PREFECT_API_URL.value():
        return None
    timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), TEMPORARY_SERVER_STARTUP_SECONDS)

    def start() -> None:
        detached_server_class()().start(timeout=timeout)  # the instance the first flow run then finds running

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    return thread


# A temporary server serves one command: it sends Prefect no telemetry unless the user's environment or profile
# asks (offline, its attempt logged an error on every command, and writing its session row once failed with a
# "database is locked" traceback). The Makefile sets the same.
QUIET_SERVER = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def detached_server_class():
    """Prefect's temporary server, started in its own process group.

    Ctrl-C in a terminal signals the whole foreground group: the server died with the command,
    which then spent ~70 s retrying to report its run as crashed. In its own group the server
    outlives the interrupt, the crash is recorded, and Prefect's exit hook stops it.
    """
    import subprocess

    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class DetachedServer(SubprocessASGIServer):
        # SubprocessASGIServer._run_uvicorn_command of Prefect 3.9.1, plus process_group=0.
        def _run_uvicorn_command(self) -> subprocess.Popen:
            server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
            app = ["--app-dir", str(prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app"]
            options = ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
            settings = get_current_settings().to_environment_variables(exclude_unset=True)
            return subprocess.Popen(
                [sys.executable, "-m", "uvicorn", *app, *options],
                env={**QUIET_SERVER, **os.environ, **server_env, **settings},
                process_group=0,
            )

    return DetachedServer


def series_task_runner(scale: ScaleConfig):
    """The task runner of the per-series work: one series at a time in the run's process by default (networks
    are not fitted in threads side by side), Dask worker processes with `scale.workers` (a LocalCluster) or
    `scale.dask_address` (a running scheduler)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    workers, address = scale.workers, scale.dask_address
    if not workers and not address:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    share_prefect_api()
    # Dask's scheduler and nannies log every worker start and stop at INFO (and a traceback for a socket closed at
    # shutdown): warnings and errors only, here and, through the environment, in the worker processes.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if address:
        return DaskTaskRunner(address=address)
    cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster)


def unmapped_each(**values) -> dict:
    """Parameters every mapped task run gets whole (a task runner's `map` maps over every other one)."""
    from prefect.utilities.annotations import unmapped

    return {name: unmapped(value) for name, value in values.items()}


def share_prefect_api() -> None:
    """Point Dask's worker processes at this process's Prefect API: without PREFECT_API_URL each would start
    a temporary server of its own and report its task runs there (PLATFORM-NOTES: SQLite locks)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value() or SubprocessASGIServer().api_url


# How long a command waits at its end for the temporary server to record its task runs' last states (a few
# milliseconds as a rule; a task run still shown running after this is left so).
RECORDING_WAIT_SECONDS = 10.0


def wait_for_task_runs_recorded(since: datetime, timeout: float = RECORDING_WAIT_SECONDS) -> bool:
    """Whether the Prefect API shows no task run that started since `since` as still running under a flow run that
    has ended, polled for at most `timeout` seconds (another command's runs, still going, are not waited for).

    The server records a task run's states from the events the client sends after it, one by one. Stopped
    before the last one was written (Prefect stops the temporary server as the command exits, and cancels a
    write in flight), the task run stayed Running for good in the Prefect database, under a flow run shown
    Failed or Completed (seen in about 1 command in 10 that ended within a second of its flow starting).
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterStartTime,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import TERMINAL_STATES, StateType

    running = TaskRunFilter(
        start_time=TaskRunFilterStartTime(after_=since),
        state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])),
    )
    ended = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(TERMINAL_STATES))))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while client.read_task_runs(flow_run_filter=ended, task_run_filter=running, limit=1):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
    return True


@contextmanager
def one_off_flow_runtime(command: str) -> Iterator[None]:
    """Run a flow from the command line with less fixed cost.

    Prefect's temporary server starts while the flow's modules import. Flow-run heartbeats are
    off: they serve crash detection of deployment runs, and stopping their thread holds the end
    of every run for up to a second. At the end, the temporary server is given the time to record
    the task runs' last states before Prefect stops it (wait_for_task_runs_recorded); not after a
    stop signal, which ends the command at once.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    started = datetime.now(UTC)
    server = start_temporary_server()
    modules = FLOW_IMPORTS[command]
    for module in [m for m in modules if m != "keras"]:
        importlib.import_module(module)
    if server is not None:
        server.join()  # before stderr is redirected: the server process must not inherit the redirection
    if "keras" in modules:
        import_keras()
    settle = server is not None  # a user's own server outlives the command and records its events meanwhile
    try:
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield
    except KeyboardInterrupt:
        settle = False
        raise
    finally:
        if settle:
            with suppress(Exception):  # a server that failed or went away: the command's own error says so
                wait_for_task_runs_recorded(started)


class QuietCompletedTasks(logging.Filter):
    """Drop "Task run ... Finished in state Completed()" lines at the command line: failures and flow lines stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "prefect.task_runs" and record.getMessage() == "Finished in state Completed()")


class KnownErrorsWithoutTraceback(logging.Filter):
    """Drop the traceback Prefect logs with a task or flow that stopped for a known reason.

    Known: RunStopped, and the Prefect API no longer answering (an httpx transport error: the
    Prefect client is the only user of httpx here). The message keeps the reason; the command
    line prints it once more as its last line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        import httpx

        from tasks.errors import RunStopped

        if record.exc_info and isinstance(record.exc_info[1], (RunStopped, httpx.TransportError)):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_command_line_logs() -> None:
    """At the command line: no traceback for a known stop, no line per completed task."""
    for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.flow_engine", "prefect.task_engine"):
        logging.getLogger(name).addFilter(KnownErrorsWithoutTraceback())
    logging.getLogger("prefect.task_runs").addFilter(QuietCompletedTasks())


def dated_run_name() -> str:
    """`<flow>-<date>-<what>`: runs of one flow told apart in Prefect's list (retrain-2026-12-01-event, train-2026-12-01-default)."""
    from datetime import datetime

    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    settings = parameters.get("settings")  # a Settings object, or its JSON form in a deployment run
    preset = settings.get("preset", "default") if isinstance(settings, dict) else getattr(settings, "preset", "default")
    what = {"retrain": parameters.get("trigger", "manual"), "predict": f"{parameters.get('days', 1)}d"}.get(
        flow_run.flow_name, preset
    )
    return f"{flow_run.flow_name}-{datetime.now().astimezone():%Y-%m-%d}-{what}"
