"""An instance's progress as server-sent events, in the words the dashboard reads: `progress`
events (one per instance event row, with its id so a reconnect resumes) and `state` events."""

from __future__ import annotations

import json

from clawdet.instances.lifecycle import in_flight
from db.models import Instance, InstanceEvent

RESTING = {"ready", "paused", "failed", "destroyed"}
PATH = "/api/instances/{instance_id}/events"


def events_path(instance_id: str) -> str:
    return PATH.format(instance_id=instance_id)


def state_of(instance: Instance) -> dict:
    return {
        "status": instance.status,
        "message": instance.status_message,
        "url": instance.url,
        "health": instance.health,
        "inFlight": in_flight(instance),
    }


def at_rest(state: dict) -> bool:
    return state["status"] in RESTING and not state["inFlight"]


def progress_event(event: InstanceEvent) -> str:
    return sse(
        event.id,
        "progress",
        {
            "step": event.step,
            "message": event.message,
            "progress": event.progress,
            "kind": event.kind,
            "at": event.at.isoformat(),
        },
    )


def state_event(state: dict) -> str:
    return sse(None, "state", state)


def sse(event_id: int | None, name: str, data: dict) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"
