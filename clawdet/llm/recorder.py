"""Writes LLM usage rows on a background thread, in batches, so recording never delays the
answer a client is waiting for. `flush()` waits until everything submitted is written."""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from dataclasses import dataclass

from clawdet.llm import usage as llm_usage
from db.engine import Database

log = logging.getLogger(__name__)

BATCH = 200


@dataclass(frozen=True)
class UsageEntry:
    user_id: str
    instance_id: str
    payment_method: str | None
    paid: bool
    model: str
    prompt_tokens: int
    completion_tokens: int
    used_before: int  # the user's month total when the request started


class UsageRecorder:
    def __init__(self, database: Database):
        self.database = database
        self._queue: queue.Queue[UsageEntry] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def submit(self, entry: UsageEntry) -> None:
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="llm-usage", daemon=True)
                    self._thread.start()
                    atexit.register(self.flush, 5.0)
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> None:
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception:  # keep the thread alive; the rows of this batch are lost and logged
                log.exception("could not record %d llm usage entries", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _write(self, batch: list[UsageEntry]) -> None:
        with self.database.session() as session:
            for entry in batch:
                llm_usage.record(
                    session,
                    user_id=entry.user_id,
                    instance_id=entry.instance_id,
                    model=entry.model,
                    prompt_tokens=entry.prompt_tokens,
                    completion_tokens=entry.completion_tokens,
                )
                llm_usage.warn_if_near_quota(
                    session,
                    entry.user_id,
                    entry.payment_method,
                    entry.paid,
                    entry.used_before + entry.prompt_tokens + entry.completion_tokens,
                )
