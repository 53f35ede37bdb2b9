"""The lifecycle's decisions, as tables: how a failed attempt settles, how health moves."""

from datetime import timedelta

import pytest

from clawdet.instances.lifecycle import (
    DESTROY_RETRY,
    Health,
    InstanceStatus,
    RetryPolicy,
    health_change,
    settle_failure,
)

POLICY = RetryPolicy(max_attempts=3, backoff_base=5, backoff_cap=12)
S = timedelta(seconds=1)
CREATING, FAILED, DESTROYING = InstanceStatus.CREATING, InstanceStatus.FAILED, InstanceStatus.DESTROYING


@pytest.mark.parametrize(
    ("attempts", "destroying", "first_create", "retry_in", "status", "cleanup", "alarm"),
    [
        # a first create: backoff doubles up to the cap, then it fails and is cleaned up
        (1, False, True, 5 * S, CREATING, False, False),
        (2, False, True, 10 * S, CREATING, False, False),
        (3, False, True, None, FAILED, True, False),
        (9, False, True, None, FAILED, True, False),
        # a repair of an instance that was ready once: same retries, but its server is kept
        (1, False, False, 5 * S, CREATING, False, False),
        (3, False, False, None, FAILED, False, False),
        # a destroy is never given up: capped backoff, then hourly with an alarm
        (1, True, False, 5 * S, DESTROYING, False, False),
        (2, True, False, 10 * S, DESTROYING, False, False),
        (3, True, False, DESTROY_RETRY, DESTROYING, False, True),
        (7, True, False, DESTROY_RETRY, DESTROYING, False, True),
    ],
)
def test_a_failed_attempt_settles_by_what_was_being_done(
    attempts, destroying, first_create, retry_in, status, cleanup, alarm
):
    current = DESTROYING if destroying else CREATING
    settled = settle_failure(
        attempts, POLICY, destroying=destroying, first_create=first_create, status=current
    )
    assert (settled.retry_in, settled.status, settled.cleanup, settled.alarm) == (
        retry_in,
        status,
        cleanup,
        alarm,
    )
    assert settled.final is (retry_in is None)


def test_backoff_is_capped():
    assert [POLICY.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 12, 12]


@pytest.mark.parametrize(
    ("current", "failures", "ok", "expected"),
    [
        (Health.UNKNOWN, 0, True, (Health.HEALTHY, 0)),
        (Health.UNHEALTHY, 5, True, (Health.HEALTHY, 0)),
        (Health.HEALTHY, 0, False, (Health.HEALTHY, 1)),  # one failed probe is not an outage
        (Health.HEALTHY, 1, False, (Health.UNHEALTHY, 2)),
        (Health.UNHEALTHY, 2, False, (Health.UNHEALTHY, 3)),
        (Health.UNKNOWN, 0, False, (Health.UNKNOWN, 1)),
    ],
)
def test_health_turns_unhealthy_only_after_repeated_failures(current, failures, ok, expected):
    assert health_change(current, failures, ok, unhealthy_after=2) == expected
