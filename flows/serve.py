"""Serve the `retrain` deployment: daily schedule, data-arrival trigger, one run at a time."""

from __future__ import annotations

from flows.retrain import EVENT_DATA_ARRIVED, retrain
from tasks.config import Settings


def serve_retrain(settings: Settings) -> None:
    """Block serving 'retrain/<deployment>' until interrupted; stopping does not pause the schedule."""
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    retrain.serve(
        name=settings.retrain.deployment,
        schedules=[Cron(settings.retrain.cron, timezone=settings.retrain.timezone, parameters={"trigger": "schedule"})],
        triggers=[
            DeploymentEventTrigger(name="retrain when data arrives", expect={EVENT_DATA_ARRIVED}, parameters={"trigger": "event"})
        ],
        parameters={"settings": settings.model_dump(mode="json")},
        description="Ingest new daily files, retrain, and move the champion alias if the challenger wins.",
        global_limit=1,  # one retrain at a time across the deployment (a single SQLite store)
        limit=1,
        pause_on_shutdown=False,  # prefect issue 16363: otherwise stopping the server pauses the schedule
    )


def prefect_api_problem(api_url: str) -> str | None:
    """Why the Prefect API at `api_url` cannot take an event now, or None when it answers."""
    import httpx

    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        return f"the Prefect API at {api_url} does not answer ({type(error).__name__})"
    return None


def announce_arrival(file_name: str, landing_file: str) -> None:
    """Emit the event that the deployment trigger turns into a retrain run."""
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    emit_event(
        event=EVENT_DATA_ARRIVED,
        resource={"prefect.resource.id": f"travel-forecast.file.{file_name}", "prefect.resource.name": file_name},
        payload={"path": landing_file},
    )
    EventsWorker.drain_all(timeout=30)  # sent before the command ends (not "Still processing items" at exit)
