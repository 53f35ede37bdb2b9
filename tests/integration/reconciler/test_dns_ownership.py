"""Hardening (issue 16, item 1): an instance never deletes or takes over DNS records the platform
did not make (real engine, stand-in plugins, sandbox Cloudflare driven by the official SDK)."""

import cloudflare
import pytest

from clawdet.instances.requests import request_destroy
from db.models import Instance
from tests.fixtures import eventually
from tests.fixtures.provisioning import instance, new_instance, records_named, servers_named

pytestmark = [pytest.mark.engine, pytest.mark.postgres]


@pytest.fixture
def operator_dns(cloud_sandbox):
    """The operator's own Cloudflare client: records made outside Clawdet."""
    client = cloudflare.Cloudflare(
        api_token=cloud_sandbox.cloudflare_token, base_url=cloud_sandbox.cloudflare_url, max_retries=0
    )
    yield lambda name, content: client.dns.records.create(
        zone_id=cloud_sandbox.zone_id, name=name, type="TXT", content=content, ttl=1
    )
    client.close()


def test_a_name_with_the_operators_records_is_refused_and_they_stay(
    reconciler, prov_db, prov_settings, cloud_sandbox, operator_dns
):
    operator_dns("ops", "v=spf1 -all")
    instance_id = new_instance(prov_db, prov_settings, "ops")
    reconciler.drain()
    refused = instance(prov_db, instance_id)
    assert refused.status == "failed" and refused.attempts == reconciler.config.max_attempts
    assert "already has DNS records Clawdet did not make" in refused.status_message
    assert servers_named(cloud_sandbox, "ops") == []  # nothing was made
    assert [r["type"] for r in records_named(cloud_sandbox, "ops.clawdet.test")] == ["TXT"]


def test_destroy_and_repairs_sweep_only_the_platforms_records(
    reconciler, prov_db, prov_settings, cloud_sandbox, operator_dns
):
    instance_id = new_instance(prov_db, prov_settings, "shared")
    reconciler.drain()
    assert instance(prov_db, instance_id).status == "ready"
    operator_dns("shared", "google-site-verification=abc")  # added later, by hand
    with prov_db.session() as session:
        row = session.get(Instance, instance_id)
        request_destroy(session, row.user, row)
    reconciler.drain()
    assert instance(prov_db, instance_id).status == "destroyed"
    eventually(lambda: servers_named(cloud_sandbox, "shared") == [], timeout=10, what="the server gone")
    remaining = records_named(cloud_sandbox, "shared.clawdet.test")
    assert [(r["type"], r["content"]) for r in remaining] == [("TXT", "google-site-verification=abc")]


def test_two_installations_sharing_a_project_never_touch_each_others_resources(
    reconciler, prov_db, prov_settings, cloud_sandbox, postgres_template, tmp_path
):
    """Item 3: staging and production in one Hetzner project and one zone. Staging asks for a
    name production already serves: it is refused, and its clean-up (which once selected
    servers by name alone) leaves production's server, volume, firewall and record alone."""
    from sqlalchemy import text

    from clawdet.reconciler import fleet
    from clawdet.reconciler.reconciler import Reconciler
    from clawdet.settings import Settings
    from db.engine import Database
    from tests.fixtures.database import new_postgres_database
    from tests.fixtures.provisioning import FAST, sandbox_env

    production_id = new_instance(prov_db, prov_settings, "alice")
    reconciler.drain()
    assert instance(prov_db, production_id).status == "ready"
    production_servers = servers_named(cloud_sandbox, "alice")
    assert [s["labels"]["clawdet-installation"] for s in production_servers] == [prov_db.installation_id]
    assert production_servers[0]["labels"]["clawdet-instance-id"] == production_id
    before = cloud_sandbox.inventory()

    url, drop = new_postgres_database(postgres_template)
    staging_db = Database(url)
    try:
        with staging_db.session() as session:  # a copy of the template: give it its own id
            session.execute(text("UPDATE installation SET id = 'cd-staging'"))
        staging_settings = Settings.from_env(
            sandbox_env(cloud_sandbox, tmp_path / "staging", url), dotenv=False
        )
        staging = Reconciler(staging_settings, staging_db, config=FAST)
        staging_id = new_instance(staging_db, staging_settings, "alice")
        staging.drain()
        refused = instance(staging_db, staging_id)
        assert refused.status == "failed" and "did not make" in refused.status_message

        after = cloud_sandbox.inventory()
        for kind in ("servers", "volumes", "firewalls", "dns_records"):
            assert [r["id"] for r in after[kind]] == [r["id"] for r in before[kind]], kind
        assert fleet.scan(staging_db, staging.target, mark=False).orphans == []  # not staging's
        finding = fleet.scan(prov_db, reconciler.target, mark=False).findings
        assert [(f.instance_id, f.problems) for f in finding] == [(production_id, [])]
    finally:
        staging_db.dispose()
        drop()
