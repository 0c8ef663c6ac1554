"""Whether the Prefect API a run reports to still answers: checked before steps that cannot be undone."""

from __future__ import annotations

from tasks.errors import RunStopped


class PrefectUnreachable(RunStopped):
    """The run's Prefect API stopped answering: going on would register and decide with no record in Prefect."""


def prefect_api_problem(api_url: str) -> str | None:
    """Why the Prefect API at `api_url` cannot be reached now, or None when it answers."""
    import httpx

    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        return f"the Prefect API at {api_url} does not answer ({type(error).__name__})"
    return None


def require_prefect_api(step: str) -> None:
    """Stop before `step` when the configured Prefect API (PREFECT_API_URL) no longer answers."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url and (problem := prefect_api_problem(url)):
        raise PrefectUnreachable(f"{problem}: stopped before {step}; the stored days are trained on by the next run")


def send_events(timeout: float = 30) -> bool:
    """Wait until the events emitted so far are sent (a command may end right after); False if some were not."""
    import logging

    from prefect.events.worker import EventsWorker

    # Stopping the worker with an event still queued logs "Still processing items" although it then sends it:
    # that line is noise here; the caller says when sending failed.
    quiet = logging.getLogger(EventsWorker.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _, not_done = EventsWorker.drain_all(timeout=timeout)
    finally:
        quiet.setLevel(level)
    return not not_done
