"""The warm pool on the real engine and plugins against the sandbox: a booted member made by the
instance program in pool mode, a new instance that adopts it (the engine imports its firewall,
volume and server) and answers through the proxy, the pool refilled, and an adoption that fails
destroying the member rather than handing it out."""

import dataclasses
import time

import pytest
from sqlalchemy import select

from clawdet.instances.requests import request_action, request_restart
from clawdet.reconciler import pool
from db.models import Instance, PoolServer, User
from tests.fixtures.provisioning import instance, new_instance, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


def members(database) -> list[PoolServer]:
    with database.sessions() as session:
        rows = session.scalars(select(PoolServer).order_by(PoolServer.created_at)).all()
        session.expunge_all()
        return list(rows)


def pool_servers(box) -> list[dict]:
    return [s for s in box.inventory()["servers"] if "clawdet-pool" in s["labels"]]


@pytest.fixture
def pooled(reconciler):
    reconciler.settings = dataclasses.replace(reconciler.settings, warm_pool="free:hel1=1")
    return reconciler


def test_a_new_instance_adopts_a_booted_pool_server_and_the_pool_refills(
    pooled, prov_db, prov_settings, cloud_sandbox
):
    report = pool.keep(pooled)
    [member] = members(prov_db)
    assert report.made == [member.id] and member.status == "ready"
    [waiting] = pool_servers(cloud_sandbox)
    assert str(waiting["id"]) == member.server_id and waiting["name"] == f"pool-{member.id}"
    assert pool.keep(pooled).made == []  # at its size: nothing more

    instance_id = new_instance(prov_db, prov_settings, "adopter")
    assert pooled.drain() == 1
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message  # a first chat went through the proxy
    assert ready.server_id == member.server_id and ready.adopted_from == member.id
    [server] = servers_named(cloud_sandbox, "adopter")  # renamed and relabelled, no second server
    assert str(server["id"]) == member.server_id and server["name"] == "adopter"
    assert "clawdet-pool" not in server["labels"] and server["labels"]["clawdet-instance-id"] == instance_id
    [volume] = [v for v in cloud_sandbox.inventory()["volumes"] if v["id"] == int(ready.volume_id)]
    assert volume["id"] == int(member.volume_id) and volume["name"] == "adopter-data"
    pulls = [w["step"] for w in server["work"] if w["step"].startswith("docker pull")]
    assert pulls and len(pulls) == len(set(pulls)), pulls  # pulled while waiting in the pool, not again
    assert pooled.stacks.existing(pool.stack_name(member.id)) is None  # the instance's stack holds them
    assert members(prov_db)[0].status == "adopted"

    refill = pool.keep(pooled)
    assert len(refill.made) == 1 and len(pool_servers(cloud_sandbox)) == 1

    # An adopted server stays through a restart; a rebuild makes a new one in full, on the same volume.
    with prov_db.session() as session:
        owner = session.get(Instance, instance_id).user_id
        request_restart(session, owner, session.get(Instance, instance_id))
    assert pooled.drain() == 1
    again = instance(prov_db, instance_id)
    assert (again.server_id, again.volume_id, again.status) == (member.server_id, member.volume_id, "ready")
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_action(session, session.get(User, row.user_id), row, "rebuild")
    assert pooled.drain() == 1
    rebuilt = instance(prov_db, instance_id)
    assert rebuilt.status == "ready", rebuilt.status_message
    assert rebuilt.server_id != member.server_id and rebuilt.volume_id == member.volume_id


def test_a_failed_adoption_destroys_the_pool_server_and_the_instance_is_made_afresh(
    pooled, prov_db, prov_settings, cloud_sandbox
):
    pool.keep(pooled)
    [member] = members(prov_db)
    # The adopting `up` fails at its deploy on the pool server.
    cloud_sandbox.faults.add(
        service=f"ssh:{member.server_id}", method="EXEC", path="docker compose * up *", status=1
    )
    instance_id = new_instance(prov_db, prov_settings, "unlucky")
    for _ in range(20):  # the failed attempt, then the retry (after its back-off)
        pooled.drain()
        if instance(prov_db, instance_id).status == "ready":
            break
        time.sleep(0.2)
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message
    server_ids = {s["id"] for s in cloud_sandbox.inventory()["servers"]}
    assert int(member.server_id) not in server_ids  # destroyed, never handed out
    assert int(member.volume_id) not in {v["id"] for v in cloud_sandbox.inventory()["volumes"]}
    assert ready.server_id != member.server_id and ready.adopted_from is None
    assert members(prov_db) == []  # nothing ready to hand out until the pool is kept again


def test_keep_retires_the_surplus_and_the_outdated_and_undoes_an_adoption_a_dead_worker_left(
    pooled, prov_db, prov_settings, cloud_sandbox
):
    pooled.settings = dataclasses.replace(pooled.settings, warm_pool="free:hel1=2")
    assert len(pool.keep(pooled).made) == 2
    oldest, newest = members(prov_db)

    pooled.settings = dataclasses.replace(pooled.settings, warm_pool="free:hel1=1")
    assert pool.keep(pooled).retired == [newest.id]  # the surplus, newest first
    assert [m.id for m in members(prov_db)] == [oldest.id]

    # Another platform setting (the operators' SSH networks: the firewall's rules) outdates it.
    pooled.settings = dataclasses.replace(pooled.settings, operator_ssh_cidrs="203.0.113.0/24")
    report = pool.keep(pooled)
    [fresh] = members(prov_db)
    assert report.retired == [oldest.id] and report.made == [fresh.id]
    assert [s["id"] for s in pool_servers(cloud_sandbox)] == [int(fresh.server_id)]

    # A worker claimed it for an instance and died before the instance's `up` finished.
    instance_id = new_instance(prov_db, prov_settings, "orphaned")
    assert pool.claim(prov_db, instance_id, fresh.openclaw_image).id == fresh.id
    assert pooled.drain() == 1
    ready = instance(prov_db, instance_id)
    assert ready.status == "ready", ready.status_message
    assert ready.adopted_from is None and ready.server_id != fresh.server_id  # made afresh
    assert int(fresh.server_id) not in {s["id"] for s in cloud_sandbox.inventory()["servers"]}
    assert members(prov_db) == [] and pool_servers(cloud_sandbox) == []
