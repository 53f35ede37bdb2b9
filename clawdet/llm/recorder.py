"""Writes LLM usage rows on a background thread, in batches, so recording never delays the
answer a client is waiting for; in the same transaction the tokens move out of the lease that
held them (clawdet/llm/admission.py), and a lease handed back (a str in the queue) is deleted.

No row is lost to a failed batch: the batch is written again one row at a time, a row that fails
for want of the database is retried with back-off until it goes in, and what is still unwritten
when the process stops is kept in a spool file that the next recorder on this data dir writes
first. Only a row whose instance or owner is gone (nothing left to charge) is dropped, and logged.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.exc import InterfaceError, OperationalError

from clawdet.llm import admission
from clawdet.llm import usage as llm_usage
from db.engine import Database
from db.models import LlmLease

log = logging.getLogger(__name__)

BATCH = 200
ORPHANED_SECONDS = 600  # a taken spool file untouched this long: its process died, take it over
GATHER_SECONDS = 0.05  # one write for all the rows of a busy moment, not one a request
RETRY_SECONDS = (0.2, 0.5, 1, 2, 5, 10, 30)


@dataclass(frozen=True)
class UsageEntry:
    user_id: str
    instance_id: str
    payment_method: str | None
    paid: bool
    model: str
    prompt_tokens: int
    completion_tokens: int
    lease_id: str | None = None  # the lease the request's tokens move out of
    day: date = field(default_factory=llm_usage.today)  # when it ran, not when it is written


class UsageRecorder:
    def __init__(self, database: Database, spool: Path | None = None):
        self.database = database
        self.spool = spool
        self._queue: queue.Queue[UsageEntry | str] = queue.Queue()  # str: a lease given back
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._stopping = threading.Event()
        self._spilling = threading.Lock()

    def submit(self, entry: UsageEntry) -> None:
        self._start()
        self._queue.put(entry)

    def release(self, lease_id: str) -> None:
        """Deletes a lease given back, after every row submitted before it."""
        self._start()
        self._queue.put(lease_id)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-usage", daemon=True)
                self._thread.start()
                atexit.register(self.close, 5.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until everything submitted is written; False if `timeout` passed first."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Writes what it can within `timeout`; the rest goes to the spool file."""
        if self._thread is None or self.flush(timeout):
            return
        self._stopping.set()  # the writer spills the rows it holds instead of waiting again
        left = []
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._spill(left)
        for _ in left:
            self._queue.task_done()
        self.flush(15.0)  # a write in progress ends, and the writer spills its rows

    def _run(self) -> None:
        try:
            self._write_spool()
        except Exception:  # never let the writer die: the rows of this run still need it
            log.exception("could not write the llm usage spool %s", self.spool)
        while True:
            batch = [self._queue.get()]
            gathered_until = time.monotonic() + GATHER_SECONDS
            while len(batch) < BATCH and (left := gathered_until - time.monotonic()) > 0:
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception as exc:
                log.warning("%d llm usage rows failed as a batch (%s); one by one now", len(batch), exc)
                try:
                    self._write_each(batch)
                except Exception:  # never let the writer die: later rows still need it
                    log.exception("llm usage rows lost")
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write_each(self, batch: list[UsageEntry | str]) -> None:
        """Each row on its own: a database that is away is waited out, a row the database
        refuses for good is logged and dropped, so it cannot hold up the rows after it."""
        for index, entry in enumerate(batch):
            attempt = 0
            while True:
                try:
                    self._write([entry])
                    break
                except (OperationalError, InterfaceError) as exc:  # away: wait, then again
                    if self._stopping.is_set():
                        self._spill(batch[index:])
                        return
                    pause = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                    attempt += 1
                    log.warning("llm usage row unwritten (try %d, next in %ss): %s", attempt, pause, exc)
                    self._stopping.wait(pause)
                except Exception as exc:
                    log.error(
                        "dropped an llm usage row the database refuses (%s): %s", type(exc).__name__, entry
                    )
                    break

    def _write(self, batch: list[UsageEntry | str]) -> None:
        entries = [entry for entry in batch if not isinstance(entry, str)]
        given_back = [entry for entry in batch if isinstance(entry, str)]
        rows: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])  # one upsert per usage row
        spent: dict[str, int] = defaultdict(int)
        for entry in entries:
            row = rows[entry.user_id, entry.instance_id, entry.model, entry.day]
            row[0] += 1
            row[1] += entry.prompt_tokens
            row[2] += entry.completion_tokens
            if entry.lease_id:
                spent[entry.lease_id] += entry.prompt_tokens + entry.completion_tokens
        with self.database.session() as session:
            if entries:
                admission.lock_owners(session.connection(), list({entry.user_id for entry in entries}))
            for (user_id, instance_id, model, day), (requests, prompt, completion) in rows.items():
                llm_usage.record(
                    session,
                    user_id=user_id,
                    instance_id=instance_id,
                    model=model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    requests=requests,
                    day=day,
                )
            for lease_id, tokens in sorted(spent.items()):
                session.execute(
                    update(LlmLease).where(LlmLease.id == lease_id).values(spent=LlmLease.spent + tokens)
                )
            if given_back:
                session.execute(delete(LlmLease).where(LlmLease.id.in_(sorted(given_back))))
            latest = {entry.user_id: entry for entry in entries}
            for day in {entry.day for entry in latest.values()}:
                users = [entry for entry in latest.values() if entry.day == day]
                totals = llm_usage.month_totals(session, [entry.user_id for entry in users], day)
                for entry in users:
                    used = totals.get(entry.user_id, 0)
                    llm_usage.warn_if_near_quota(
                        session, entry.user_id, entry.payment_method, entry.paid, used, day
                    )

    def _spill(self, entries: list[UsageEntry | str]) -> None:
        entries = [entry for entry in entries if not isinstance(entry, str)]  # leases lapse
        if not entries:
            return
        if self.spool is None:
            log.error("lost %d llm usage rows: the database is away and there is no spool file", len(entries))
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({**asdict(entry), "day": entry.day.isoformat()}) + "\n" for entry in entries
        )
        with self._spilling:  # one write of whole lines, appended: other processes' lines stay whole
            descriptor = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, lines.encode())
            finally:
                os.close(descriptor)
        log.warning("kept %d unwritten llm usage rows in %s", len(entries), self.spool)

    def _write_spool(self) -> None:
        """Writes the rows an earlier run kept (also files another process took but did not
        finish); each file goes only once its rows are in the database or kept again."""
        if self.spool is None:
            return
        taken = self.spool.with_name(
            f"{self.spool.name}.{socket.gethostname()}.{os.getpid()}.{time.time_ns()}"
        )
        try:
            os.replace(self.spool, taken)  # another process on this data dir takes it, or we do
        except FileNotFoundError:
            pass
        for path in sorted(self.spool.parent.glob(f"{self.spool.name}.*")):
            if path != taken and time.time() - path.stat().st_mtime < ORPHANED_SECONDS:
                continue  # being written by the process that took it
            entries = [
                entry for line in path.read_text(errors="replace").splitlines() if (entry := _entry(line))
            ]
            log.info("writing %d llm usage rows kept from an earlier run", len(entries))
            self._write_each(entries)  # all written, or the rest kept in the spool again
            path.unlink()


def _entry(line: str) -> UsageEntry | None:
    try:
        fields = json.loads(line)
        day = date.fromisoformat(fields["day"]) if fields.get("day") else llm_usage.today()
        return UsageEntry(**{**fields, "day": day})
    except (ValueError, TypeError, KeyError):
        log.error("skipped an unreadable line of the llm usage spool: %r", line[:200])
        return None
