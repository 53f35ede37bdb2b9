"""The dashboard's progress streams, `/api/instances/<id>/events` (server-sent events).

One poller per process reads new instance events and the state of every watched instance
twice a second, whatever the number of open streams, and fans them out; a new stream catches
up on its own once (everything after its Last-Event-ID). Each poll reads again from where the
poll before the last one stopped, so an event whose transaction committed late is still seen;
a stream passes each event on once, in id order per instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator

from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from clawdet.errors import UserFacingError
from clawdet.instances import progress
from db.engine import Database
from db.models import Instance, InstanceEvent
from streams.http import services
from streams.sessions import SessionReader

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAX_SECONDS = 300  # the browser's EventSource reconnects with Last-Event-ID
HEARTBEAT_SECONDS = 15
PAGE = 500
BACKLOG = 64


class Watcher:
    def __init__(self, after: int):
        self.last = after
        self.queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    def events(self, events: list[InstanceEvent]) -> list[str]:
        fresh = [event for event in events if event.id > self.last]
        if fresh:
            self.last = fresh[-1].id
        return [progress.progress_event(event) for event in fresh]


class ProgressHub:
    def __init__(self, database: Database, poll_seconds: float = POLL_SECONDS):
        self.database = database
        self.poll_seconds = poll_seconds
        self.watchers: dict[str, set[Watcher]] = defaultdict(set)
        self._floors: deque[int] = deque(maxlen=2)
        self._task: asyncio.Task | None = None

    async def stream(
        self, instance_id: str, after: int, max_seconds: float = MAX_SECONDS
    ) -> AsyncIterator[str]:
        watcher = Watcher(after)
        self.watchers[instance_id].add(watcher)
        self._ensure_polling()
        try:
            yield "retry: 2000\n\n"
            backlog, state, newest = await run_in_threadpool(self._catch_up, instance_id, after)
            watcher.last = min(watcher.last, newest)  # a Last-Event-ID from the future counts from now
            for text in watcher.events(backlog):
                yield text
            if state is None:
                return
            yield progress.state_event(state)
            if progress.at_rest(state):
                return
            deadline = time.monotonic() + max_seconds
            while (left := deadline - time.monotonic()) > 0:
                try:
                    kind, item = await asyncio.wait_for(watcher.queue.get(), min(left, HEARTBEAT_SECONDS))
                except TimeoutError:
                    yield progress.state_event(state)  # a heartbeat through idle proxies
                    continue
                if kind == "close":
                    return  # the server stops: the browser reconnects (to another) with Last-Event-ID
                if kind == "events":
                    for text in watcher.events(item):
                        yield text
                    continue
                if item is None:
                    return  # the instance is gone
                changed, state = item != state, item
                if changed:
                    yield progress.state_event(state)
                if progress.at_rest(state):
                    return
        finally:
            self.watchers[instance_id].discard(watcher)
            if not self.watchers[instance_id]:
                del self.watchers[instance_id]

    def _ensure_polling(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="progress-poller")

    async def _poll(self) -> None:
        while self.watchers:
            try:
                if not self._floors:  # from the oldest event a stream has not passed on yet
                    start = min(watcher.last for watchers in self.watchers.values() for watcher in watchers)
                    self._floors.extend([start, start])
                polled = list(self.watchers)
                events, states = await run_in_threadpool(self._read, polled)
            except Exception as exc:  # the database is away: the streams wait, the poller goes on
                log.warning("progress poll failed: %s", exc)
                await asyncio.sleep(self.poll_seconds * 4)
                continue
            by_instance = defaultdict(list)
            for event in events:
                by_instance[event.instance_id].append(event)
            for instance_id in polled:  # a stream that joined meanwhile waits for the next poll
                for watcher in list(self.watchers.get(instance_id, ())):
                    if by_instance.get(instance_id):
                        watcher.queue.put_nowait(("events", by_instance[instance_id]))
                    if watcher.queue.qsize() < BACKLOG:  # a stalled client gets no pile of states
                        watcher.queue.put_nowait(("state", states.get(instance_id)))
            await asyncio.sleep(self.poll_seconds)
        self._floors.clear()  # the next stream starts the poller afresh from where it stands

    def _read(self, instance_ids: list[str]) -> tuple[list[InstanceEvent], dict[str, dict]]:
        with self.database.sessions() as session:
            # The state first: an instance seen at rest has its last event in this read too.
            instances = session.scalars(select(Instance).where(Instance.id.in_(instance_ids)))
            states = {instance.id: progress.state_of(instance) for instance in instances}
            floor = self._floors[0]
            events = list(
                session.scalars(
                    select(InstanceEvent)
                    .where(InstanceEvent.id > floor, InstanceEvent.instance_id.in_(instance_ids))
                    .order_by(InstanceEvent.id)
                    .limit(PAGE)
                )
            )
            newest = max([self._floors[-1], *(event.id for event in events)])
            self._floors.append(events[-1].id if len(events) == PAGE else newest)
            return events, states

    def _catch_up(self, instance_id: str, after: int) -> tuple[list[InstanceEvent], dict | None, int]:
        with self.database.sessions() as session:
            events = list(
                session.scalars(
                    select(InstanceEvent)
                    .where(InstanceEvent.instance_id == instance_id, InstanceEvent.id > after)
                    .order_by(InstanceEvent.id)
                )
            )
            instance = session.get(Instance, instance_id)
            newest = session.scalar(select(func.max(InstanceEvent.id))) or 0
            return events, (progress.state_of(instance) if instance else None), newest

    def close_streams(self) -> None:
        """Ends every open stream now (the server is stopping) rather than at its time limit."""
        for watchers in list(self.watchers.values()):
            for watcher in list(watchers):
                watcher.queue.put_nowait(("close", None))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def instance_events(request: Request) -> StreamingResponse:
    """Every event of the signed-in owner's instance after Last-Event-ID, until it rests."""
    box = services(request)
    instance_id = request.path_params["instance_id"]
    await run_in_threadpool(_authorize, box.sessions, box.database, request.cookies, instance_id)
    after = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    return StreamingResponse(
        box.hub.stream(instance_id, int(after) if after.isdecimal() and len(after) < 19 else 0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _authorize(reader: SessionReader, database: Database, cookies: dict, instance_id: str) -> None:
    user = reader.user(cookies)
    if user is None:
        raise UserFacingError(
            "not_signed_in", "You need to sign in first.", "Sign in, then try again.", status=401
        )
    with database.sessions() as session:
        owner = session.scalar(select(Instance.user_id).where(Instance.id == instance_id))
    if owner != user.id:
        raise UserFacingError("not_found", "No such instance.", "Check the instance id.", status=404)


routes = [Route(progress.PATH, instance_events, methods=["GET"])]
