"""The proxy process's side of the quota and of the limits per instance, on its event loop.

Each owner with requests here has one lease (clawdet/llm/admission.py): tokens this process
may hand out without asking the database. A request reserves its most possible cost inside the
lease; when the lease has too little left it grows, by what is missing plus GROW_EXTRA, as far
as the quota allows, so most requests cost no database round trip at all. What a request spent
moves from the lease to the usage rows in the recorder's transaction; an idle lease is given
back (through the recorder, after the usage before it), so other processes may use it.

Keys are looked up again after CALLER_SECONDS, in the background while requests go on: a
rotated, destroyed or disabled key stops working within about that time (a rotation keeps the
old key working until the new one is live anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from clawdet.errors import UserFacingError
from clawdet.llm import admission
from clawdet.llm.admission import Caller
from clawdet.llm.recorder import UsageRecorder
from db.engine import Database

log = logging.getLogger(__name__)

CALLER_SECONDS = 1.0
REFRESH_AHEAD_SECONDS = 0.75  # a busy key is looked up again before its lookup expires
CALLER_STALE_SECONDS = 10.0  # how long a lookup stands in while the database is away or slow
LOOKUP_PATIENCE_SECONDS = 0.25  # how long a request waits for a fresh lookup when it has one of these
GROW_EXTRA = 16_384
HOLD_SECONDS = 120.0  # a lease of a process that died lapses after this
KEEP_ALIVE_SECONDS = 30.0
IDLE_SECONDS = 30.0
RETRY_AFTER_BUSY = "5"
MIN_ANSWER = 256  # answer tokens worth a request: fewer left is a 429, not an answer cut to nothing


def database_away(exc: Exception) -> UserFacingError:
    log.warning("the llm proxy could not reach the database: %s", type(exc).__name__)
    return UserFacingError(
        "unavailable",
        "The proxy cannot check your key and quota right now.",
        "Try again in a minute.",
        status=503,
        headers={"Retry-After": "30"},
    )


@dataclass
class Lease:
    id: str | None = None
    granted: int = 0  # by the database, in all
    spent: int = 0  # by this process's finished requests (the recorder catches up)
    reserved: int = 0  # by its open requests
    last_used: float = field(default_factory=time.monotonic)
    confirmed: float = 0.0  # when the database last renewed it (it lapses HOLD_SECONDS later)
    growing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free(self) -> int:
        return self.granted - self.spent - self.reserved

    @property
    def stale(self) -> bool:
        """Close to lapsing (keep-alives failed): grow it (and renew it) before spending more."""
        return time.monotonic() - self.confirmed > HOLD_SECONDS - 2 * KEEP_ALIVE_SECONDS


@dataclass
class Ticket:
    caller: Caller
    lease: Lease
    tokens: int  # reserved: the prompt's ceiling plus max_tokens
    max_tokens: int  # what the upstream is told
    prompt_ceiling: int
    open: bool = True


class Ledger:
    def __init__(
        self, database: Database, recorder: UsageRecorder, *, max_concurrent: int, default_max_tokens: int
    ):
        self.database, self.recorder = database, recorder
        self.max_concurrent, self.default_max_tokens = max_concurrent, default_max_tokens
        self.leases: dict[str, Lease] = {}
        self.open: dict[str, int] = {}  # requests per instance
        self._callers: dict[str, tuple[float, Caller]] = {}
        self._lookups: dict[str, asyncio.Future] = {}
        self._upkeep: asyncio.Task | None = None

    async def caller(self, key: str) -> Caller:
        """The key's caller, looked up again when the last lookup is older than CALLER_SECONDS
        (one lookup a key at a time), so a rotated or destroyed key stops within a second. Only
        while the database cannot answer, or takes longer than LOOKUP_PATIENCE_SECONDS, do
        requests go on with a lookup up to CALLER_STALE_SECONDS old."""
        now = time.monotonic()
        cached = self._callers.get(key)
        if cached and now - cached[0] < CALLER_SECONDS:
            if now - cached[0] >= REFRESH_AHEAD_SECONDS:
                self._lookup(key)  # in the background: no request of a busy key waits for one
            return cached[1]
        looking = self._lookup(key)
        stale_ok = cached is not None and now - cached[0] < CALLER_STALE_SECONDS
        try:
            if stale_ok:
                return await asyncio.wait_for(asyncio.shield(looking), LOOKUP_PATIENCE_SECONDS)
            return await asyncio.shield(looking)
        except TimeoutError:
            return cached[1]  # a slow database: the key was good a moment ago, its lookup goes on
        except UserFacingError as error:
            if error.status == 503 and stale_ok:
                return cached[1]  # a database blip: the key was good a moment ago
            raise

    def _lookup(self, key: str) -> asyncio.Future:
        """The key's lookup under way, or a new one."""
        looking = self._lookups.get(key)
        if looking is None:
            looking = self._lookups[key] = asyncio.ensure_future(self._look_up(key))
            looking.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen
        return looking

    async def _look_up(self, key: str) -> Caller:
        try:
            caller = await asyncio.to_thread(admission.authenticate, self.database, key)
        except UserFacingError:
            self._callers.pop(key, None)  # refused: its next request is refused too
            raise
        except SQLAlchemyError as exc:
            raise database_away(exc) from None
        finally:
            del self._lookups[key]
        if len(self._callers) > 50_000:
            self._callers.clear()
        self._callers[key] = (time.monotonic(), caller)
        return caller

    async def reserve(self, caller: Caller, body: dict) -> Ticket:
        """The request's reservation, or a 429 in plain words (too many open, quota)."""
        asked = admission.asked_max_tokens(body)
        choices = admission.choices(body)
        prompt = admission.prompt_ceiling(body)
        if (open_here := self.open.get(caller.instance_id, 0)) >= self.max_concurrent:
            raise UserFacingError(
                "too_many_requests",
                f"This instance already has {open_here} requests open at the proxy "
                f"(at most {self.max_concurrent}).",
                "Wait for an answer to finish, then try again.",
                status=429,
                headers={"Retry-After": RETRY_AFTER_BUSY},
            )
        self.open[caller.instance_id] = open_here + 1  # before any wait: a burst counts at once
        try:
            return await self._reserve(caller, prompt, asked or self.default_max_tokens, choices)
        except BaseException:
            self._closed(caller.instance_id)
            raise

    async def _reserve(self, caller: Caller, prompt: int, asked: int, choices: int) -> Ticket:
        self._ensure_upkeep()
        lease = self.leases.setdefault(caller.user_id, Lease())
        want = prompt + asked * choices
        if lease.free < want or lease.stale:
            async with lease.growing:
                if lease.free < want or lease.stale:
                    grant = await self._grow(caller, lease, want - lease.free + GROW_EXTRA)
                    if lease.free < prompt + min(asked, MIN_ANSWER) * choices:
                        raise admission.quota_exceeded(grant, caller.quota or 0, want)
        max_tokens = min(asked, (lease.free - prompt) // choices)
        if max_tokens < min(asked, MIN_ANSWER):  # other requests hold what is left
            raise UserFacingError(
                "quota_held",
                "The rest of this month's token quota is held by requests still running.",
                "Try again when they have finished.",
                status=429,
                headers={"Retry-After": "10"},
            )
        tokens = prompt + max_tokens * choices
        lease.reserved += tokens
        lease.last_used = time.monotonic()
        return Ticket(caller, lease, tokens, max_tokens, prompt)

    async def _grow(self, caller: Caller, lease: Lease, want: int) -> admission.Grant:
        try:
            grant = await asyncio.to_thread(
                admission.grow_lease, self.database, caller, lease.id, want, HOLD_SECONDS
            )
        except SQLAlchemyError as exc:
            raise database_away(exc) from None
        lease.id, lease.granted, lease.confirmed = grant.lease_id, grant.granted, time.monotonic()
        return grant

    def settle(self, ticket: Ticket, spent: int) -> None:
        """The request is over and spent `spent` tokens (the recorder moves them to usage)."""
        if not ticket.open:
            return
        ticket.open = False
        ticket.lease.reserved -= ticket.tokens
        ticket.lease.spent += spent
        ticket.lease.last_used = time.monotonic()
        self._closed(ticket.caller.instance_id)

    def _closed(self, instance_id: str) -> None:
        self.open[instance_id] -= 1
        if not self.open[instance_id]:
            del self.open[instance_id]

    def _ensure_upkeep(self) -> None:
        if self._upkeep is None or self._upkeep.done():
            self._upkeep = asyncio.create_task(self._keep(), name="llm-leases")

    async def _keep(self) -> None:
        """Keeps busy leases alive and gives idle ones back."""
        while self.leases:
            await asyncio.sleep(KEEP_ALIVE_SECONDS)
            now = time.monotonic()
            for user_id, lease in list(self.leases.items()):
                if not lease.reserved and now - lease.last_used > IDLE_SECONDS and not lease.growing.locked():
                    del self.leases[user_id]
                    if lease.id:
                        self.recorder.release(lease.id)  # after the usage recorded before it
            alive = {lease.id: lease for lease in self.leases.values() if lease.id}
            if alive:
                try:
                    renewed = await asyncio.to_thread(
                        admission.keep_alive, self.database, sorted(alive), HOLD_SECONDS
                    )
                    for lease_id in renewed:
                        alive[lease_id].confirmed = now
                except Exception as exc:  # stale leases grow (and renew) before they spend again
                    log.warning("could not keep %d llm leases alive: %s", len(alive), exc)

    async def close(self) -> None:
        """Gives every lease back (after the usage already handed to the recorder)."""
        if self._upkeep is not None:
            self._upkeep.cancel()
        for lease in self.leases.values():
            if lease.id:
                self.recorder.release(lease.id)
        self.leases.clear()
