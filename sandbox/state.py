"""The sandbox's durable state: one JSON document, written atomically and debounced.

Everything the fake clouds own (servers, actions, firewalls, DNS records, X users, the
credentials handed out) lives in one dict so a restart reloads it whole. Writes happen at
most every ``flush_interval`` seconds from the event loop, and once more on stop, so creating
1000 servers does not serialise the whole document 1000 times.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import tempfile
from typing import Any

SCHEMA_VERSION = 1

_EMPTY_SECTIONS = (
    "secrets",
    "counters",
    "servers",
    "actions",
    "firewalls",
    "volumes",
    "images",  # snapshots (the catalogue images are hetzner_catalog.py)
    "ssh_keys",
    "zones",
    "dns_records",
    "x_users",
)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hetzner_time(moment: dt.datetime | None = None) -> str:
    """Hetzner's timestamps: ``2016-01-30T23:55:00+00:00``."""
    return (moment or utc_now()).isoformat(timespec="seconds")


def cloudflare_time(moment: dt.datetime | None = None) -> str:
    """Cloudflare's timestamps: ``2014-01-01T05:20:00.12345Z``."""
    return (moment or utc_now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StateStore:
    def __init__(self, path: pathlib.Path, flush_interval: float = 0.25) -> None:
        self.path = pathlib.Path(path)
        self.flush_interval = flush_interval
        self.data: dict[str, Any] = {"version": SCHEMA_VERSION}
        for section in _EMPTY_SECTIONS:
            self.data[section] = {} if section != "x_users" else []
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None

    # -- loading and saving -------------------------------------------------------------
    def load(self) -> bool:
        """Reads the state file if there is one; returns whether it existed."""
        if not self.path.exists():
            return False
        loaded = json.loads(self.path.read_text(encoding="utf-8"))
        if loaded.get("version") != SCHEMA_VERSION:
            raise ValueError(f"{self.path}: unsupported sandbox state version {loaded.get('version')!r}")
        for section in _EMPTY_SECTIONS:
            loaded.setdefault(section, {} if section != "x_users" else [])
        self.data = loaded
        return True

    def mark_dirty(self) -> None:
        self._dirty = True

    def flush_now(self) -> None:
        self._dirty = False
        self._write(json.dumps(self.data, separators=(",", ":"), sort_keys=True))

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, self.path)
        except BaseException:
            pathlib.Path(tmp_name).unlink(missing_ok=True)
            raise

    def start_flusher(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def stop_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
        self.flush_now()

    async def _flush_periodically(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.flush_interval)
            if not self._dirty:
                continue
            self._dirty = False
            # Serialise on the loop (a consistent snapshot), write in a thread.
            text = json.dumps(self.data, separators=(",", ":"), sort_keys=True)
            await loop.run_in_executor(None, self._write, text)

    # -- helpers for the services -------------------------------------------------------
    def next_id(self, counter: str, start: int = 1) -> int:
        counters = self.data["counters"]
        value = counters.get(counter, start - 1) + 1
        counters[counter] = value
        self.mark_dirty()
        return value

    def section(self, name: str) -> dict[str, Any]:
        return self.data[name]
