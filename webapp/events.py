"""Server-sent events of an instance's progress, read from the instance_events table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from sqlalchemy import select

from db.engine import Database
from db.models import Instance, InstanceEvent

RESTING = {"ready", "paused", "failed", "destroyed"}
POLL_SECONDS = 0.5
MAX_SECONDS = 300  # the browser's EventSource reconnects with Last-Event-ID
HEARTBEAT_SECONDS = 15


def event_stream(
    database: Database, instance_id: str, after: int, max_seconds: float = MAX_SECONDS
) -> Iterator[str]:
    yield "retry: 2000\n\n"
    started = last_beat = time.monotonic()
    while time.monotonic() - started < max_seconds:
        with database.sessions() as session:
            events = session.scalars(
                select(InstanceEvent)
                .where(InstanceEvent.instance_id == instance_id, InstanceEvent.id > after)
                .order_by(InstanceEvent.id)
                .limit(200)
            ).all()
            instance = session.get(Instance, instance_id)
            state = instance_state(instance) if instance else None
        for event in events:
            after = event.id
            yield format_event(
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
        if state is None:
            return
        if events or time.monotonic() - last_beat > HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            yield format_event(None, "state", state)
        if state["status"] in RESTING and not state["inFlight"]:
            yield format_event(None, "state", state)
            return
        time.sleep(POLL_SECONDS)


def instance_state(instance: Instance) -> dict:
    from clawdet.instances.lifecycle import in_flight

    return {
        "status": instance.status,
        "message": instance.status_message,
        "url": instance.url,
        "health": instance.health,
        "inFlight": in_flight(instance),
    }


def format_event(event_id: int | None, name: str, data: dict) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n"
