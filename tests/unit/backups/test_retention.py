"""Retention keeps the newest backup of each of the last 7 days, 4 ISO weeks and 3 months that
have one, and nothing else."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from clawdet.backups.retention import Policy, to_keep

START = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)  # a Thursday


def nightly(days: int, start: datetime = START) -> list[tuple[str, datetime]]:
    return [(f"b{n}", start + timedelta(days=n)) for n in range(days)]


def test_nothing_to_keep():
    assert to_keep([]) == set()


def test_fewer_backups_than_slots_are_all_kept():
    backups = nightly(5)
    assert to_keep(backups) == {b for b, _ in backups}


def test_a_hundred_nights():
    backups = nightly(100)  # 2026-01-01 .. 2026-04-10
    kept = {at.date().isoformat() for b, at in backups if b in to_keep(backups)}
    daily = {f"2026-04-{d:02d}" for d in range(4, 11)}
    weekly = {"2026-03-22", "2026-03-29", "2026-04-05", "2026-04-10"}  # newest of each ISO week
    monthly = {"2026-02-28", "2026-03-31", "2026-04-10"}
    assert kept == daily | weekly | monthly
    assert len(kept) == 7 + 2 + 2  # Apr 5 and Apr 10 count for several rules


def test_counts_are_the_policy():
    backups = nightly(400)
    assert len(to_keep(backups, Policy(daily=7, weekly=0, monthly=0))) == 7
    assert len(to_keep(backups, Policy(daily=0, weekly=4, monthly=0))) == 4
    assert len(to_keep(backups, Policy(daily=0, weekly=0, monthly=3))) == 3
    assert len(to_keep(backups, Policy(daily=0, weekly=0, monthly=0))) == 0


def test_several_backups_a_day_keep_the_newest_of_each_day():
    backups = [
        (f"{day}-{hour}", START + timedelta(days=day, hours=hour)) for day in range(3) for hour in (0, 5, 9)
    ]
    assert to_keep(backups, Policy(daily=7, weekly=0, monthly=0)) == {"0-9", "1-9", "2-9"}


def test_gaps_count_days_that_have_backups():
    backups = [("old", START), ("new", START + timedelta(days=30))]
    assert to_keep(backups, Policy(daily=2, weekly=0, monthly=0)) == {"old", "new"}


@pytest.mark.parametrize("seed", range(20))
def test_against_a_plain_model(seed):
    """Each rule keeps, for its N most recent periods with a backup, the newest one in it;
    whatever the order the backups come in."""
    rng = random.Random(seed)
    backups = [(f"b{n}", START + timedelta(minutes=rng.randrange(0, 200 * 24 * 60))) for n in range(60)]
    newest = sorted(backups, key=lambda b: b[1], reverse=True)
    expected = set()
    for count, period in (
        (7, lambda at: at.date()),
        (4, lambda at: at.isocalendar()[:2]),
        (3, lambda at: (at.year, at.month)),
    ):
        periods = sorted({period(at) for _, at in backups}, reverse=True)[:count]
        expected |= {next(b for b, at in newest if period(at) == p) for p in periods}
    rng.shuffle(backups)
    assert to_keep(backups) == expected
    assert len(expected) <= 14
