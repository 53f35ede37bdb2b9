"""The proxy's quota ledger against a real database: bursts respect the cap on open requests,
`n` answers are reserved n times, leases of two processes never hand out more than the quota,
a lapsed lease is granted afresh, and the recorder moves spent tokens out of leases."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from clawdet.errors import UserFacingError
from clawdet.llm import admission, ledger
from clawdet.llm.ledger import Ledger
from clawdet.llm.recorder import UsageEntry, UsageRecorder
from db.models import LlmLease, utcnow
from tests.fixtures.llm import customer_with_instance


def body(text: str = "hello there", **extra) -> dict:
    return {"model": "sandbox-small", "messages": [{"role": "user", "content": text}], **extra}


def record_usage(database, user_id: str, instance_id: str, tokens: int) -> None:
    from clawdet.llm import usage

    with database.session() as s:
        usage.record(
            s, user_id=user_id, instance_id=instance_id, model="m", prompt_tokens=tokens, completion_tokens=0
        )


@pytest.fixture
def caller(database):
    return admission.authenticate(database, customer_with_instance(database, "s")[2])


def new_ledger(database, **limits) -> Ledger:
    return Ledger(
        database,
        UsageRecorder(database),
        max_concurrent=limits.get("max_concurrent", 16),
        default_max_tokens=limits.get("default_max_tokens", 100),
    )


async def outcomes(ledger_: Ledger, caller, count: int, **extra) -> list:
    async def one():
        try:
            return await ledger_.reserve(caller, body(**extra))
        except UserFacingError as error:
            return error.code

    return await asyncio.gather(*(one() for _ in range(count)))


def test_a_burst_for_one_instance_respects_the_cap_on_open_requests(database, caller):
    results = asyncio.run(outcomes(new_ledger(database, max_concurrent=3), caller, 10))
    assert sum(not isinstance(r, str) for r in results) == 3
    assert results.count("too_many_requests") == 7


def test_n_answers_are_reserved_n_times_and_both_length_fields_are_capped(database, caller):
    [ticket] = asyncio.run(outcomes(new_ledger(database), caller, 1, n=3, max_tokens=40))
    assert ticket.tokens == ticket.prompt_ceiling + 3 * 40 and ticket.lease.reserved == ticket.tokens
    sent = body(max_tokens=100_000, max_completion_tokens=1)
    admission.set_max_tokens(sent, 40)
    assert sent["max_tokens"] == sent["max_completion_tokens"] == 40
    with pytest.raises(UserFacingError) as refused:
        admission.choices(body(n=100))
    assert refused.value.code == "invalid_request"


def test_two_processes_never_hold_more_than_the_quota(database, caller, monkeypatch):
    """Two ledgers (two proxy processes) race for the 5,000 tokens left: each request wants
    300; together they reserve at most 5,000, and the rest are refused in plain words."""
    monkeypatch.setattr(ledger, "GROW_EXTRA", 0)
    monkeypatch.setattr(ledger, "MIN_ANSWER", 1)
    record_usage(database, caller.user_id, caller.instance_id, 100_000 - 5_000)
    first, second = new_ledger(database, default_max_tokens=290), new_ledger(database, default_max_tokens=290)

    async def race():
        return await asyncio.gather(outcomes(first, caller, 12), outcomes(second, caller, 12))

    results = [r for side in asyncio.run(race()) for r in side]
    reserved = sum(r.tokens for r in results if not isinstance(r, str))
    assert 0 < reserved <= 5_000
    assert {r for r in results if isinstance(r, str)} <= {"quota_exceeded", "quota_held"}
    with database.session() as s:
        held = sum(g - sp for g, sp in s.execute(select(LlmLease.granted, LlmLease.spent)))
    assert held <= 5_000


def test_a_lapsed_lease_is_granted_afresh_not_revived(database, caller):
    grant = admission.grow_lease(database, caller, None, 1_000, 120)
    record_usage(database, caller.user_id, caller.instance_id, 400)  # spent, and recorded
    with database.session() as s:
        s.execute(update(LlmLease).values(spent=400, expires_at=utcnow() - timedelta(seconds=1)))
    other = admission.grow_lease(database, caller, None, 100_000, 120)  # another process
    assert other.granted == 100_000 - 400  # the lapsed lease's 600 unspent tokens are free again
    assert admission.keep_alive(database, [grant.lease_id, other.lease_id], 120) == {other.lease_id}
    again = admission.grow_lease(database, caller, grant.lease_id, 1_000, 120)
    assert again.granted == 400  # nothing left: it does not get its old 1,000 back


def test_the_recorder_moves_spent_tokens_out_of_the_lease_and_deletes_given_back_leases(database, caller):
    grant = admission.grow_lease(database, caller, None, 1_000, 120)
    recorder = UsageRecorder(database)
    entry = UsageEntry(caller.user_id, caller.instance_id, None, True, "m", 30, 12, lease_id=grant.lease_id)
    recorder.submit(entry)
    assert recorder.flush()
    with database.session() as s:
        assert s.execute(select(LlmLease.granted, LlmLease.spent)).one() == (1_000, 42)
    recorder.release(grant.lease_id)
    assert recorder.flush()
    with database.session() as s:
        assert s.scalar(select(LlmLease)) is None


def test_a_busy_key_is_looked_up_again_while_its_requests_go_on(database, monkeypatch):
    key = customer_with_instance(database, "s")[2]
    lookups, finish = [], threading.Event()
    authenticate = admission.authenticate

    def slow_after_the_first(database_, key_):
        lookups.append(key_)
        if len(lookups) > 1:
            finish.wait(10)
        return authenticate(database_, key_)

    monkeypatch.setattr(ledger.admission, "authenticate", slow_after_the_first)
    monkeypatch.setattr(ledger, "REFRESH_AHEAD_SECONDS", 0.0)  # every hit refreshes ahead

    async def scenario():
        ledger_ = new_ledger(database)
        first = await ledger_.caller(key)
        again = await asyncio.wait_for(ledger_.caller(key), 1)  # its lookup hangs: not waited for
        await asyncio.sleep(0.1)
        assert again == first and len(lookups) == 2
        await ledger_.caller(key)  # one lookup a key at a time
        assert len(lookups) == 2
        finish.set()
        await ledger_._lookups[key]

    asyncio.run(scenario())
