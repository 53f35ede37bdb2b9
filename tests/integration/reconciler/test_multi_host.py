"""Two worker hosts, one PostgreSQL: separate processes with their own data dirs and project
copies (so their own stack files), one database holding the work queue and the Pulumi state. They
converge 12 instances; one host is killed outright mid-`up`, and the other finishes its work: every
instance ready, one server and one A record each, nothing orphaned (real engine, sandbox)."""

import pytest
from sqlalchemy import select

from db.models import Instance, InstanceEvent
from tests.fixtures import eventually, kill_machine
from tests.fixtures.provisioning import new_instance, records_named, servers_named, worker_host

pytestmark = [pytest.mark.engine, pytest.mark.postgres]

COUNT = 12


def start_host(prov_env, folder):
    options = ["--concurrency", "2", "--scan-interval", "0", "--lease-seconds", "8", "--ready-deadline", "60"]
    return worker_host(prov_env, folder, *options)


def rows(database) -> list[Instance]:
    with database.sessions() as session:
        found = list(session.scalars(select(Instance).order_by(Instance.subdomain)))
        session.expunge_all()
        return found


def test_two_hosts_converge_a_fleet_and_one_finishes_what_the_other_was_killed_doing(
    prov_env, prov_settings, prov_db, cloud_sandbox, tmp_path
):
    names = [f"host{n:02d}" for n in range(COUNT)]
    for name in names:
        new_instance(prov_db, prov_settings, name)
    cloud_sandbox.faults.add(service="cloudflare", latency=1.0)  # each `up` stays busy a while
    doomed = start_host(prov_env, tmp_path / "host-a")
    survivor = start_host(prov_env, tmp_path / "host-b")
    try:

        def doomed_mid_up() -> bool:
            mine = [i for i in rows(prov_db) if i.lease_owner and f":{doomed.pid}:" in i.lease_owner]
            return any(servers_named(cloud_sandbox, i.subdomain) for i in mine)

        eventually(doomed_mid_up, 180, 0.1, what="host A in the middle of an `up` with its server made")
        killed = {i.id for i in rows(prov_db) if i.lease_owner and f":{doomed.pid}:" in i.lease_owner}
        kill_machine(doomed)  # its engines die with it, leaving their locks and leases
        cloud_sandbox.faults.clear()
        eventually(
            lambda: all(i.status in ("ready", "failed") for i in rows(prov_db)),
            420,
            what="host B to converge the whole fleet",
        )
    finally:
        for host in (doomed, survivor):
            if host.poll() is None:
                kill_machine(host)
    final = rows(prov_db)
    assert [(i.subdomain, i.status) for i in final] == [(name, "ready") for name in names]
    servers = cloud_sandbox.inventory()["servers"]
    assert sorted(s["name"] for s in servers) == names  # one each, none orphaned
    for row in final:
        [server] = servers_named(cloud_sandbox, row.subdomain)
        assert str(server["id"]) == row.server_id
        assert (
            len(
                [
                    r
                    for r in records_named(cloud_sandbox, f"{row.subdomain}.{prov_settings.base_domain}")
                    if r["type"] == "A"
                ]
            )
            == 1
        )
    with prov_db.sessions() as session:
        recovered = set(
            session.scalars(select(InstanceEvent.instance_id).where(InstanceEvent.step == "recovery"))
        )
    assert killed and killed <= recovered  # host B took over exactly what host A held
