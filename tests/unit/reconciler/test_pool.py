"""The warm pool's pure parts: WARM_POOL read, what of an instance is still the adopted member,
and a member never counted as a fleet orphan."""

import pytest

from clawdet.errors import UserFacingError
from clawdet.ops.warm_pool import targets, wanted
from clawdet.reconciler import pool
from clawdet.reconciler.fleet import ServersOf
from db.models import PoolServer
from programs import naming


def test_warm_pool_targets_are_read_and_bad_ones_refused_clearly():
    assert targets("") == {}
    assert targets(" free:hel1=2, free:fsn1=0 ") == {("free", "hel1"): 2, ("free", "fsn1"): 0}
    for bad, says in (
        ("free:hel1", "tier:region=count"),
        ("gold:hel1=1", "is not a tier"),
        ("free:hel1=-1", "tier:region=count"),
    ):
        with pytest.raises(ValueError, match=says):
            targets(bad)

    class Settings:
        warm_pool = "free=2"

    with pytest.raises(UserFacingError) as refused:
        wanted(Settings())
    assert refused.value.code == "bad_warm_pool" and "WARM_POOL" in refused.value.action


def test_a_pool_stack_name_is_never_an_instance_name():
    name = pool.stack_name("ab12cd34ef")
    with pytest.raises(ValueError):
        naming.validate_subdomain(name)


def test_the_server_stays_adopted_until_it_is_replaced_and_the_volume_for_good():
    member = PoolServer(status="adopted", server_id="7", volume_id="8", firewall_id="9")
    assert pool.still_adopted(member, "7", replacing_server=False) == ["volume", "server"]
    assert pool.still_adopted(member, "7", replacing_server=True) == ["volume"]  # a rebuild: made in full
    assert pool.still_adopted(member, "12", replacing_server=False) == ["volume"]  # replaced before
    member.status = "adopting"
    assert pool.still_adopted(member, None, replacing_server=False) is None
    assert pool.import_ids(member) == "7,8,9"


def test_a_waiting_pool_server_is_nobodys_orphan():
    ours = {naming.MANAGED_LABEL: "clawdet", naming.INSTALLATION_LABEL: "inst"}
    servers = [
        {"id": 1, "name": "pool-ab12", "labels": {**ours, naming.POOL_LABEL: "ab12"}},
        {"id": 2, "name": "lost", "labels": {**ours, naming.INSTANCE_ID_LABEL: "gone"}},
    ]
    assert ServersOf("inst", [], servers).orphans() == ["lost"]
