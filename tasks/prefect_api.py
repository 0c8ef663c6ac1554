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
