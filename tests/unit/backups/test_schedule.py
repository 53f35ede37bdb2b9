"""Each instance backs up once a night at its own moment inside the window."""

from datetime import UTC, datetime, timedelta

import pytest

from clawdet.backups.schedule import Window, is_due, latest_slot, offset

WINDOW = Window.parse("01:00-05:00")


def test_parse():
    assert WINDOW.length == timedelta(hours=4)
    assert Window.parse("23:30-01:30").length == timedelta(hours=2)  # across midnight


@pytest.mark.parametrize("text", ["", "1:00-5:00", "01:00", "25:00-01:00", "01:00-01:00", "01:00 - 05:00x"])
def test_bad_windows_are_refused_in_words(text):
    with pytest.raises(ValueError, match="BACKUP_WINDOW"):
        Window.parse(text)


def test_offsets_are_stable_inside_the_window_and_spread():
    offsets = [offset(f"inst_{n:04d}", WINDOW) for n in range(2000)]
    assert all(timedelta(0) <= o < WINDOW.length for o in offsets)
    assert offset("inst_0001", WINDOW) == offsets[1]
    per_hour = [sum(1 for o in offsets if h * 3600 <= o.total_seconds() < (h + 1) * 3600) for h in range(4)]
    assert min(per_hour) > 400  # 500 expected per hour
    assert len(set(offsets)) > 1800  # ~1860 expected: 2000 draws of 14400 seconds


def test_latest_slot_and_due():
    slot_offset = offset("inst_a", WINDOW)
    tonight = datetime(2026, 3, 10, 1, 0, tzinfo=UTC) + slot_offset
    assert latest_slot("inst_a", WINDOW, tonight) == tonight
    assert latest_slot("inst_a", WINDOW, tonight - timedelta(seconds=1)) == tonight - timedelta(days=1)
    assert latest_slot("inst_a", WINDOW, tonight + timedelta(hours=20)) == tonight

    assert is_due("inst_a", WINDOW, tonight, None)
    assert is_due("inst_a", WINDOW, tonight, tonight - timedelta(hours=23))
    assert not is_due("inst_a", WINDOW, tonight + timedelta(minutes=5), tonight + timedelta(seconds=1))
    assert not is_due("inst_a", WINDOW, tonight - timedelta(minutes=1), tonight - timedelta(hours=23))
    # A worker down for three nights catches up once.
    later = tonight + timedelta(days=3, hours=2)
    assert is_due("inst_a", WINDOW, later, tonight)
    assert not is_due("inst_a", WINDOW, later, later)


def test_a_window_across_midnight():
    window = Window.parse("23:00-01:00")
    for n in range(200):
        now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
        slot = latest_slot(f"i{n}", window, now)
        assert slot <= now and now - slot < timedelta(days=1)
        assert slot.time() >= datetime(2026, 1, 1, 23, 0).time() or slot.hour == 0
