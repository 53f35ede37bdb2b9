"""The dashboard's progress stream, `/api/instances/<id>/events`, served by the stream server
with the web app's own session cookie: events as they are recorded, resumption after
Last-Event-ID, the end when the instance rests, owners only, and one poller for all streams."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import httpx
import pytest
from sqlalchemy import event, select

from clawdet.instances import lifecycle
from clawdet.instances.lifecycle import InstanceStatus
from db.models import Instance
from tests.fixtures.browser import free_port
from tests.fixtures.llm import proxy_client


@pytest.fixture
def web(settings, database):
    settings = dataclasses.replace(settings, public_url=f"http://127.0.0.1:{free_port()}")
    with proxy_client(settings, database) as client:
        yield client


def sign_up(base_url, email: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in over HTTP, and the id of the instance it asked for."""
    http = httpx.Client(base_url=base_url, timeout=30)
    token = http.get("/api/auth/csrf").json()["csrfToken"]
    for path, body in (
        ("/api/auth/register", {"name": "Pat", "email": email, "password": "correct horse"}),
        ("/api/auth/details", {"email": email, "acceptTerms": True}),
    ):
        response = http.post(path, json=body, headers={"X-CSRFToken": token})
        assert response.status_code in (200, 201), response.text
        token = response.json().get("csrfToken", token)
    created = http.post("/api/instances", json={}, headers={"X-CSRFToken": token})
    assert created.status_code == 202, created.text
    return http, created.json()["instance"]["id"]


class Listener(threading.Thread):
    """Reads one event stream on a thread: (id, event, data) as they come, until it ends."""

    def __init__(self, http: httpx.Client, path: str, **headers: str):
        super().__init__(daemon=True)
        self.http, self.path, self.headers = http, path, headers
        self.events: list[tuple[str | None, str, dict]] = []
        self.status: int | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._read()
        except httpx.HTTPError as exc:  # the server stopped under an open stream
            self.error = exc

    def _read(self) -> None:
        with self.http.stream("GET", self.path, headers=self.headers, timeout=60) as response:
            self.status = response.status_code
            event_id = name = None
            for line in response.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.events.append((event_id, name, json.loads(line[6:])))
                    event_id = name = None

    def wait_for(self, predicate, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not any(predicate(e) for e in self.events):
            assert time.monotonic() < deadline, f"not seen in {timeout}s: {self.events}"
            time.sleep(0.05)


def progress(database, instance_id: str, message: str, **changes) -> None:
    with database.session() as s:
        instance = s.get(Instance, instance_id)
        lifecycle.record(s, instance, "server", message, status=changes.get("status"))
        if changes.get("ready"):
            lifecycle.ready(instance, instance.generation)


def test_events_arrive_as_recorded_and_the_stream_ends_when_the_instance_rests(web, database):
    http, instance_id = sign_up(web.base_url, "pat@example.com")
    path = f"/api/instances/{instance_id}/events"
    listener = Listener(http, path)
    listener.start()
    listener.wait_for(lambda e: e[1] == "state" and e[2]["inFlight"])
    progress(database, instance_id, "Creating the server", status=InstanceStatus.CREATING)
    listener.wait_for(lambda e: e[1] == "progress" and e[2]["message"] == "Creating the server")
    progress(database, instance_id, "Ready", status=InstanceStatus.READY, ready=True)
    listener.join(timeout=10)
    assert not listener.is_alive(), "the stream did not end once the instance was at rest"
    assert listener.status == 200
    last = listener.events[-1]
    assert last[1] == "state" and last[2]["status"] == "ready" and not last[2]["inFlight"]
    ids = [int(e[0]) for e in listener.events if e[1] == "progress"]
    assert ids == sorted(set(ids))  # each event once, in order

    resumed = Listener(http, path, **{"Last-Event-ID": str(ids[-2])})
    resumed.run()
    assert [int(e[0]) for e in resumed.events if e[1] == "progress"] == ids[-1:]


def test_only_the_signed_in_owner_may_listen(web, database):
    _owner, instance_id = sign_up(web.base_url, "owner@example.com")
    stranger, _ = sign_up(web.base_url, "stranger@example.com")
    path = f"/api/instances/{instance_id}/events"
    refused = stranger.get(path)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    anonymous = httpx.get(web.base_url.join(path), timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_signed_in"
    stranger.post("/logout", headers={"X-CSRFToken": stranger.get("/api/auth/csrf").json()["csrfToken"]})
    assert stranger.get(path).status_code == 401  # a signed-out cookie opens nothing


def test_one_poller_serves_every_open_stream(web, database):
    """Twenty open streams cost the database what one does: the per-stream catch-up once, then
    one poll for all of them twice a second (a poll per stream would be 20 times that)."""
    http, instance_id = sign_up(web.base_url, "many@example.com")
    reads = []
    event.listen(
        database.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_a: (
            reads.append(statement) if "FROM instance_events" in statement else None
        ),
    )
    listeners = [Listener(http, f"/api/instances/{instance_id}/events") for _ in range(20)]
    for listener in listeners:
        listener.start()
    for listener in listeners:
        listener.wait_for(lambda e: e[1] == "state")
    reads.clear()
    time.sleep(3)
    assert len(reads) <= 10, f"{len(reads)} reads of instance events in 3 s for 20 streams"
    progress(database, instance_id, "Creating the server", status=InstanceStatus.CREATING)
    for listener in listeners:
        listener.wait_for(lambda e: e[1] == "progress" and e[2]["message"] == "Creating the server")
    with database.session() as s:
        assert s.scalar(select(Instance.status).where(Instance.id == instance_id)) == "creating"
    http.close()  # hang up, so the server need not wait for these streams when it stops
