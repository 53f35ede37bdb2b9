"""Which backups to keep: 7 daily, 4 weekly, 3 monthly (grandfather-father-son).

As restic's `--keep-daily/--keep-weekly/--keep-monthly`: for each of the last N days (ISO weeks,
months) that have a backup, the newest backup of that period is kept; one backup may count for
several rules. Days are UTC days. Pure: the caller deletes what is not returned.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Policy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 3


def _day(at: datetime) -> tuple[int, ...]:
    return (at.year, at.month, at.day)


def _week(at: datetime) -> tuple[int, ...]:
    year, week, _ = at.isocalendar()
    return (year, week)


def _month(at: datetime) -> tuple[int, ...]:
    return (at.year, at.month)


def to_keep(backups: Iterable[tuple[Hashable, datetime]], policy: Policy = Policy()) -> set[Hashable]:
    """`backups`: (id, taken_at in UTC) of one instance's backups that count; the ids to keep."""
    newest_first = sorted(backups, key=lambda backup: backup[1], reverse=True)
    keep: set[Hashable] = set()
    for count, period in ((policy.daily, _day), (policy.weekly, _week), (policy.monthly, _month)):
        keep |= _newest_per_period(newest_first, period, count)
    return keep


def _newest_per_period(
    newest_first: list[tuple[Hashable, datetime]], period: Callable[[datetime], tuple[int, ...]], count: int
) -> set[Hashable]:
    kept: dict[tuple[int, ...], Hashable] = {}
    for backup_id, taken_at in newest_first:
        key = period(taken_at)
        if key not in kept:
            if len(kept) == count:
                break
            kept[key] = backup_id
    return set(kept.values())
