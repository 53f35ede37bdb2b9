"""Which image a new instance's server boots from: the newest golden snapshot of its OpenClaw
version and region, else the stock image; chosen once and kept, never for a server that exists."""

from types import SimpleNamespace

import pytest

from clawdet import cloud
from clawdet.reconciler import golden
from db.models import Instance
from tests.fixtures.provisioning import new_instance
from tests.unit.reconciler.test_image_digests import reconciler as make_reconciler


@pytest.fixture
def reconciler(tmp_path, database):
    made = make_reconciler(tmp_path, sandbox=True)
    made.database = database
    return made


def lookups(monkeypatch, answer):
    asked = []

    def newest(target, installation_id, openclaw_image, region, **images):
        asked.append((installation_id, openclaw_image, region))
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(golden, "newest", newest)
    return asked


def chosen(database, instance_id):
    with database.sessions() as session:
        return session.get(Instance, instance_id).server_image


def config_of(reconciler, instance_id):
    with reconciler.database.sessions() as session:
        return reconciler.stack_config(session.get(Instance, instance_id))


def test_a_new_instance_boots_from_the_newest_golden_snapshot_and_keeps_it(reconciler, monkeypatch):
    asked = lookups(monkeypatch, 300000007)
    instance_id = new_instance(reconciler.database, reconciler.settings, "alice")
    reconciler.choose_server_image(instance_id)
    assert chosen(reconciler.database, instance_id) == "300000007"
    [(installation, image, region)] = asked
    assert installation == reconciler.database.installation_id and region == "hel1"
    assert image.startswith("ghcr.io/openclaw/openclaw:")
    config = config_of(reconciler, instance_id)
    assert config["clawdet:serverImage"] == ("300000007", False)
    assert config["clawdet:goldenImage"] == ("true", False)

    lookups(monkeypatch, 300000099)  # a newer snapshot never moves an instance that has chosen
    reconciler.choose_server_image(instance_id)
    assert chosen(reconciler.database, instance_id) == "300000007"


@pytest.mark.parametrize("answer", [None, cloud.ApiError("hetzner", 503, "unavailable")])
def test_without_a_snapshot_or_a_lookup_the_stock_image(reconciler, monkeypatch, answer):
    lookups(monkeypatch, answer)
    instance_id = new_instance(reconciler.database, reconciler.settings, "bob")
    reconciler.choose_server_image(instance_id)
    assert chosen(reconciler.database, instance_id) == "ubuntu-24.04"
    config = config_of(reconciler, instance_id)
    assert config["clawdet:serverImage"] == ("ubuntu-24.04", False)
    assert "clawdet:goldenImage" not in config


def test_an_instance_whose_server_exists_is_never_moved(reconciler, monkeypatch):
    asked = lookups(monkeypatch, 300000007)
    instance_id = new_instance(reconciler.database, reconciler.settings, "carol")
    with reconciler.database.session() as session:
        session.get(Instance, instance_id).server_id = "42"  # made before golden snapshots
    reconciler.choose_server_image(instance_id)
    assert asked == [] and chosen(reconciler.database, instance_id) is None
    assert "clawdet:serverImage" not in config_of(reconciler, instance_id)  # the program's default


def test_a_retry_whose_snapshot_a_rebuild_deleted_chooses_again(reconciler, monkeypatch):
    lookups(monkeypatch, 300000007)
    instance_id = new_instance(reconciler.database, reconciler.settings, "dave")
    reconciler.choose_server_image(instance_id)
    checked = []
    gone = {"300000007": True}
    monkeypatch.setattr(reconciler, "_snapshot_gone", lambda sid: checked.append(sid) or gone.get(sid, False))
    asked = lookups(monkeypatch, 300000099)

    reconciler.choose_server_image(instance_id)  # first attempt: the choice stands, nothing asked
    assert checked == [] and asked == [] and chosen(reconciler.database, instance_id) == "300000007"

    with reconciler.database.session() as session:
        session.get(Instance, instance_id).attempts = 1
    gone["300000007"] = False  # a retry whose snapshot is still there keeps it
    reconciler.choose_server_image(instance_id)
    assert checked == ["300000007"] and asked == []
    assert chosen(reconciler.database, instance_id) == "300000007"

    gone["300000007"] = True  # deleted by a rebuild, but the failed attempt made the server: kept
    made = [{"type": "hcloud:index/server:Server"}]
    monkeypatch.setattr(reconciler, "stacks", SimpleNamespace(resources=lambda name: made), raising=False)
    reconciler.choose_server_image(instance_id)
    assert asked == [] and chosen(reconciler.database, instance_id) == "300000007"

    made.clear()  # deleted before the server was made: the newest instead
    reconciler.choose_server_image(instance_id)
    assert len(asked) == 1 and chosen(reconciler.database, instance_id) == "300000099"
