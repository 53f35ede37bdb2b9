"""When each instance's nightly backup runs: its own moment in the night window, from a hash of
its id, so the fleet is spread over the window instead of backing up at one minute. Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class Window:
    start: time
    length: timedelta

    @classmethod
    def parse(cls, text: str) -> Window:
        """ "01:00-05:00" (UTC); a window may cross midnight ("23:00-03:00")."""
        match = _WINDOW.fullmatch(text.strip())
        if not match:
            raise ValueError(f"BACKUP_WINDOW is {text!r}; write it as HH:MM-HH:MM in UTC, e.g. 01:00-05:00")
        start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
        minutes = (end_h * 60 + end_m - start_h * 60 - start_m) % (24 * 60)
        if minutes == 0:
            raise ValueError("BACKUP_WINDOW starts and ends at the same minute; give it a length")
        return cls(time(start_h, start_m, tzinfo=UTC), timedelta(minutes=minutes))


def offset(instance_id: str, window: Window) -> timedelta:
    """The instance's place in the window, to the second; the same on every worker and every night."""
    digest = int.from_bytes(hashlib.sha256(instance_id.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % int(window.length.total_seconds()))


def latest_slot(instance_id: str, window: Window, now: datetime) -> datetime:
    """The instance's most recent nightly moment at or before `now`."""
    now = now.astimezone(UTC)
    for days_back in (0, 1):
        night = datetime.combine(now.date() - timedelta(days=days_back), window.start)
        slot = night + offset(instance_id, window)
        if slot <= now:
            return slot
    return datetime.combine(now.date() - timedelta(days=2), window.start) + offset(instance_id, window)


def is_due(instance_id: str, window: Window, now: datetime, last_nightly: datetime | None) -> bool:
    """Whether the nightly backup should run now: its moment has passed and no nightly backup was
    attempted since (a worker that was down catches up once, not once per missed night)."""
    return last_nightly is None or last_nightly < latest_slot(instance_id, window, now)
