"""Serve the `retrain` deployment: daily schedule, data-arrival trigger, one run at a time."""

from __future__ import annotations

import contextlib

from flows.retrain import EVENT_DATA_ARRIVED, retrain, retrain_each_series
from tasks.config import Settings
from tasks.errors import RunStopped

ZOMBIE_AUTOMATION = "travel-forecast: crash runs without a heartbeat"
HEARTBEAT_SECONDS = 30  # what a deployment run reports; Prefect's docs pair 30 s with a 90 s silence


def ensure_zombie_automation() -> str:
    """Create (once) Prefect's documented automation that marks a flow run Crashed when its heartbeats stop.

    A run whose machine died, or that was SIGKILLed with its runner, would otherwise stay Running
    for good. Returns "created" or "present".
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIE_AUTOMATION)
        return "present"
    except ValueError:  # not found
        pass
    ends = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}
    Automation(
        name=ZOMBIE_AUTOMATION,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *ends},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, message=f"no heartbeat for {3 * HEARTBEAT_SECONDS} s: the run's process is gone"
            )
        ],
    ).create()
    return "created"


def _deployment_options(settings: Settings) -> dict:
    """What `serve` and `deploy` give the retrain deployment alike: schedule, data trigger, settings, description."""
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    on_event = {"trigger": "event"} | ({"series": "{{ event.payload.series }}"} if settings.many_series else {})
    return {
        "name": settings.retrain.deployment,
        "schedules": [Cron(settings.retrain.cron, timezone=settings.retrain.timezone, parameters={"trigger": "schedule"})],
        "triggers": [DeploymentEventTrigger(name="retrain when data arrives", expect={EVENT_DATA_ARRIVED}, parameters=on_event)],
        # Only what differs from the built-in defaults: `prefect deployment run --watch` prints these in one line.
        "parameters": {"settings": settings.model_dump(mode="json", exclude_defaults=True)},
        "description": "Ingest new daily files, retrain, and move the champion alias if the challenger wins.",
    }


def serve_retrain(settings: Settings) -> None:
    """Block serving 'retrain/<deployment>' until interrupted; stopping does not pause the schedule."""
    import os

    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))  # inherited by every run it starts
    ensure_zombie_automation()

    (retrain_each_series if settings.many_series else retrain).serve(
        **_deployment_options(settings),
        global_limit=1,  # one retrain at a time across the deployment (a single SQLite store)
        limit=1,
        pause_on_shutdown=False,  # prefect issue 16363: otherwise stopping the server pauses the schedule
    )


def deploy_retrain(settings: Settings, pool: str) -> str:
    """Create or update 'retrain/<deployment>' on a process work pool: `prefect worker start --pool <pool>` runs it.

    The workers run this folder's code (they must see it at the same path) with the config's
    settings as the deployment's parameters. Returns the deployment's id.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from tasks.config import PROJECT_ROOT

    ensure_zombie_automation()
    # A second deploy updates the deployment on the same pool.
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    flow = retrain_each_series if settings.many_series else retrain
    source = flow.from_source(source=str(PROJECT_ROOT), entrypoint=f"flows/retrain.py:{flow.fn.__name__}")
    return str(
        source.deploy(
            **_deployment_options(settings),
            work_pool_name=pool,
            job_variables={"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}},
            concurrency_limit=1,
            print_next_steps=False,
        )
    )


def announce_arrival(file_name: str, landing_file: str, series: str | None = None) -> None:
    """Emit the event that the deployment trigger turns into a retrain run (of `series` alone, when given)."""
    from prefect.events import emit_event

    from tasks.prefect_api import send_events

    emit_event(
        event=EVENT_DATA_ARRIVED,
        resource={"prefect.resource.id": f"travel-forecast.file.{file_name}", "prefect.resource.name": file_name},
        payload={"path": landing_file} | ({"series": series} if series else {}),
    )
    if not send_events(timeout=30):
        raise RunStopped(f"the {EVENT_DATA_ARRIVED} event was not sent within 30 s; the file waits for the next retrain")
