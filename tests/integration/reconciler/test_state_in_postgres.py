"""With PostgreSQL as the platform's database the Pulumi state lives there too, by default
(Pulumi's DIY postgres backend, table `pulumi_state`): nothing a worker needs is on its disk.
A worker killed mid-`up` leaves a lock in that table; the next one clears it with the engine's
own `pulumi cancel` and finishes (real engine, stand-in plugins, sandbox, real PostgreSQL)."""

import base64
import json
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from clawdet.reconciler.reconciler import Reconciler
from clawdet.settings import Settings
from tests.fixtures.provisioning import FAST, instance, new_instance, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.fixture
def pg_state_settings(prov_env) -> Settings:
    env = dict(prov_env)
    env.pop("PULUMI_BACKEND_URL")  # the default: the platform's own database
    return Settings.from_env(env, dotenv=False)


def state_keys(database, like: str) -> list[str]:
    """Keys of the engine's table (which its first operation creates)."""
    try:
        with database.engine.connect() as connection:
            found = connection.execute(text("SELECT key FROM pulumi_state WHERE key LIKE :k"), {"k": like})
            return list(found.scalars())
    except ProgrammingError:  # not created yet
        return []


def test_the_state_lives_in_postgres_and_a_dead_workers_lock_is_cleared_there(
    pg_state_settings, prov_db, cloud_sandbox
):
    settings = pg_state_settings
    assert settings.pulumi_backend_url.startswith("postgres://")
    assert settings.pulumi_backend_url.endswith("?sslmode=disable&table=pulumi_state")
    config = replace(FAST, lease=timedelta(seconds=4))
    instance_id = new_instance(prov_db, settings, "pgstate")

    # A worker that dies mid-`up`: its engine is killed outright (no chance to unlock).
    doomed = Reconciler(settings, prov_db, config=config, owner="doomed")
    worker = threading.Thread(target=doomed.run_once)
    worker.start()
    deadline = time.monotonic() + 60
    while not state_keys(prov_db, "%/locks/%pgstate%"):
        assert time.monotonic() < deadline, "the engine never took its lock"
        time.sleep(0.05)
    doomed.lease_lost.set()  # it writes nothing more, as a dead worker would not
    doomed.stacks.command.fence(worker.ident, grace=0)
    worker.join(60)
    assert state_keys(prov_db, "%/locks/%pgstate%"), "the killed engine left no lock to clear"
    assert instance(prov_db, instance_id).status != "ready"

    taker = Reconciler(settings, prov_db, config=config, owner="taker")
    deadline = time.monotonic() + 30
    while not taker.run_once():  # a full lease after the dead one's end
        assert time.monotonic() < deadline, "the lease was never taken over"
        time.sleep(0.2)
    taker.drain()
    done = instance(prov_db, instance_id)
    assert done.status == "ready", done.status_message
    assert state_keys(prov_db, "%/locks/%pgstate%") == []
    assert state_keys(prov_db, "%/stacks/%pgstate.json")  # the checkpoint is in the database
    assert len(servers_named(cloud_sandbox, "pgstate")) == 1


def test_a_lock_left_by_a_stack_creation_is_cleared_too(pg_state_settings, prov_db, cloud_sandbox):
    """Creating a stack takes its lock, and `pulumi cancel` needs the stack: a worker killed in
    between leaves a lock that only the table gives back."""
    stacks = Reconciler(pg_state_settings, prov_db, config=FAST).stacks
    stacks.stack("made")  # the engine makes its table
    [meta] = state_keys(prov_db, "%/.pulumi/stacks/%made.json")
    lock = meta.split("/.pulumi/")[0] + "/.pulumi/locks/organization/clawdet-instance/ghost/dead.json"
    with prov_db.engine.begin() as connection:
        connection.execute(
            text("INSERT INTO pulumi_state (key, data) VALUES (:k, CAST(:d AS json))"),
            {
                "k": lock,
                "d": json.dumps({"data": base64.b64encode(b'{"pid": 1, "hostname": "gone"}').decode()}),
            },
        )
    with pytest.raises(Exception, match="locked"):
        stacks.stack("ghost")
    stacks.clear_stale_lock("ghost")
    assert state_keys(prov_db, "%/locks/%ghost%") == []
    assert stacks.stack("ghost").name == "ghost"
