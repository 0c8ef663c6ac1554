"""Prefect runtime tuning for flows started from the command line (not deployments)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# What each one-off flow command imports; TensorFlow only where a network is always fitted or loaded.
FLOW_IMPORTS = {
    "train": ["flows.train", "keras"],
    "backtest": ["flows.backtest", "keras"],
    "retrain": ["flows.retrain"],  # a run with no new data never loads TensorFlow
    "predict": ["flows.predict", "keras"],
}


def start_temporary_server() -> threading.Thread | None:
    """Without PREFECT_API_URL, start Prefect's temporary server now, in the background (~3 s)."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        SubprocessASGIServer().start()  # the instance the first flow run then finds running

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    return thread


@contextmanager
def one_off_flow_runtime(command: str) -> Iterator[None]:
    """Run a flow from the command line with less fixed cost.

    Prefect's temporary server starts while the flow's modules import. Flow-run heartbeats are
    off: they serve crash detection of deployment runs, and stopping their thread holds the end
    of every run for up to a second.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    server = start_temporary_server()
    for module in FLOW_IMPORTS[command]:
        importlib.import_module(module)
    if server is not None:
        server.join()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
