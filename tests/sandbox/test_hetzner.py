"""The Hetzner Cloud stand-in, driven by the official `hcloud` Python SDK."""

from __future__ import annotations

import httpx
import pytest
from hcloud import APIException, Client
from hcloud.firewalls import FirewallResource, FirewallResourceLabelSelector, FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server
from hcloud.ssh_keys import SSHKey

from tests.fixtures.sandbox import cloud_config

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0c2FuZGJveGtleWZvcnRlc3Rpbmdvbmx5MTIzNA== test@sandbox"


def create_server(client: Client, name: str, **extra):
    response = client.servers.create(
        name=name,
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        location=Location(name="fsn1"),
        user_data=cloud_config(f"token-{name}"),
        **extra,
    )
    response.action.wait_until_finished()
    for action in response.next_actions:
        action.wait_until_finished()
    return response


def raw(sandbox, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sandbox.hcloud_token}", **kwargs.pop("headers", {})}
    return httpx.request(method, sandbox.hcloud_url + path, headers=headers, **kwargs)


def test_create_get_update_delete_with_actions(sandbox, hcloud_client):
    response = hcloud_client.servers.create(
        name="claw-alice",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        location=Location(name="nbg1"),
        user_data=cloud_config("t0k"),
        labels={"clawdet.io/instance": "alice"},
    )
    assert response.action.command == "create_server"
    assert response.action.status == "running"
    assert response.server.status == "initializing"
    assert response.root_password  # no SSH key given
    response.action.wait_until_finished()
    assert response.action.status == "success"

    server = hcloud_client.servers.get_by_id(response.server.id)
    assert server.status == "running"
    assert server.server_type.name == "cx22" and server.server_type.architecture == "x86"
    assert server.image.name == "ubuntu-24.04"
    assert server.location.name == "nbg1"
    ipv4 = server.public_net.ipv4.ip
    assert ipv4.startswith("127.") and ipv4 != "127.0.0.1"
    assert server.public_net.ipv6.ip.startswith("2001:db8:")
    assert hcloud_client.servers.get_by_name("claw-alice").id == server.id

    updated = hcloud_client.servers.update(server, name="claw-alice-2", labels={"tier": "pro"})
    assert updated.name == "claw-alice-2" and updated.labels == {"tier": "pro"}

    delete_action = hcloud_client.servers.delete(server)
    assert delete_action.command == "delete_server"
    delete_action.wait_until_finished()
    with pytest.raises(APIException) as missing:
        hcloud_client.servers.get_by_id(server.id)
    assert missing.value.code == "not_found"
    assert hcloud_client.servers.get_by_name("claw-alice-2") is None


def test_actions_are_listed_per_server_and_by_id(sandbox, hcloud_client):
    created = create_server(hcloud_client, "claw-actions")
    server = created.server
    power_off = hcloud_client.servers.power_off(server)
    power_off.wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).status == "off"
    power_on = hcloud_client.servers.power_on(server)
    power_on.wait_until_finished()
    commands = [a.command for a in hcloud_client.servers.get_actions(server)]
    assert commands == ["create_server", "start_server", "stop_server", "start_server"]
    assert hcloud_client.actions.get_by_id(power_off.id).status == "success"
    body = raw(sandbox, "GET", f"/actions?id={power_off.id}&id={power_on.id}").json()
    assert sorted(a["id"] for a in body["actions"]) == sorted([power_off.id, power_on.id])
    assert all(a["resources"] == [{"id": server.id, "type": "server"}] for a in body["actions"])


def test_list_paginates_and_filters_by_label_selector(sandbox, hcloud_client):
    for index in range(7):
        labels = {"app": "claw", "tier": "pro" if index % 2 else "free"}
        if index == 6:
            labels = {"app": "other"}
        hcloud_client.servers.create(
            name=f"claw-{index}",
            server_type=ServerType(name="cx22"),
            image=Image(name="ubuntu-24.04"),
            labels=labels,
        )

    page = hcloud_client.servers.get_list(page=2, per_page=3)
    assert [s.name for s in page.servers] == ["claw-3", "claw-4", "claw-5"]
    assert page.meta.pagination.total_entries == 7
    assert page.meta.pagination.last_page == 3
    assert page.meta.pagination.previous_page == 1 and page.meta.pagination.next_page == 3
    assert len(hcloud_client.servers.get_all()) == 7  # the SDK walks every page

    def names(selector: str) -> set[str]:
        return {s.name for s in hcloud_client.servers.get_all(label_selector=selector)}

    assert names("app=claw") == {f"claw-{i}" for i in range(6)}
    assert names("app=claw,tier!=free") == {"claw-1", "claw-3", "claw-5"}
    assert names("tier in (pro,enterprise)") == {"claw-1", "claw-3", "claw-5"}
    assert names("tier notin (pro)") == {"claw-0", "claw-2", "claw-4", "claw-6"}
    assert names("tier") == {f"claw-{i}" for i in range(6)}
    assert names("!tier") == {"claw-6"}
    assert [s.name for s in hcloud_client.servers.get_all(name="claw-4")] == ["claw-4"]
    by_name_desc = raw(sandbox, "GET", "/servers?sort=name:desc&per_page=2").json()["servers"]
    assert [s["name"] for s in by_name_desc] == ["claw-6", "claw-5"]

    with pytest.raises(APIException) as bad_selector:
        hcloud_client.servers.get_all(label_selector="app in (")
    assert bad_selector.value.code == "invalid_input"
    with pytest.raises(APIException) as too_many:
        hcloud_client.servers.get_list(per_page=51)
    assert too_many.value.code == "invalid_input"


def test_invalid_create_is_refused_with_field_details_and_creates_nothing(sandbox, hcloud_client):
    response = raw(sandbox, "POST", "/servers", json={"name": "no spaces allowed", "image": "ubuntu-24.04"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    fields = {f["name"]: f["messages"] for f in error["details"]["fields"]}
    assert fields["server_type"] == ["Missing data for required field."]
    assert fields["name"] == ["Name must be a valid hostname."]

    for body, field in [
        ({"name": "a", "server_type": "cx999", "image": "ubuntu-24.04"}, "server_type"),
        ({"name": "a", "server_type": "cx22", "image": "windows-95"}, "image"),
        ({"name": "a", "server_type": "cx22", "image": "ubuntu-24.04", "location": "mars1"}, "location"),
        ({"name": "a", "server_type": "cax11", "image": "ubuntu-24.04", "location": "ash"}, "location"),
        (
            {"name": "a", "server_type": "cx22", "image": "ubuntu-24.04", "labels": {"bad key!": "x"}},
            "labels",
        ),
        (
            {"name": "a", "server_type": "cx22", "image": "ubuntu-24.04", "user_data": "x" * 40000},
            "user_data",
        ),
        (
            {"name": "a", "server_type": "cx22", "image": "ubuntu-24.04", "firewalls": [{"firewall": 999}]},
            "firewalls",
        ),
        ({"name": 42, "server_type": "cx22", "image": "ubuntu-24.04"}, "name"),
    ]:
        refused = raw(sandbox, "POST", "/servers", json=body)
        assert refused.status_code == 400, body
        assert [f["name"] for f in refused.json()["error"]["details"]["fields"]] == [field], body

    not_json = raw(
        sandbox, "POST", "/servers", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "json_error"
    assert hcloud_client.servers.get_all() == []
    assert sandbox.inventory()["servers"] == []


def test_duplicate_name_unknown_ids_and_bad_token(sandbox, hcloud_client):
    create_server(hcloud_client, "claw-dup")
    with pytest.raises(APIException) as duplicate:
        hcloud_client.servers.create(
            name="claw-dup", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04")
        )
    assert duplicate.value.code == "uniqueness_error"
    assert len(hcloud_client.servers.get_all()) == 1

    with pytest.raises(APIException) as unknown:
        hcloud_client.servers.power_off(Server(id=424242))
    assert unknown.value.code == "not_found"
    assert raw(sandbox, "GET", "/servers/abc").status_code == 404
    assert raw(sandbox, "POST", "/servers/1/actions/explode").json()["error"]["code"] == "not_found"

    wrong = Client(token="x" * 64, api_endpoint=sandbox.hcloud_url)
    with pytest.raises(APIException) as unauthorized:
        wrong.servers.get_all()
    assert unauthorized.value.code == "unauthorized"
    short = httpx.get(sandbox.hcloud_url + "/servers", headers={"Authorization": "Bearer short"})
    assert short.status_code == 401 and short.json()["error"]["code"] == "unauthorized"


def test_server_is_locked_while_an_action_runs_and_protection_holds(sandbox, hcloud_client):
    response = hcloud_client.servers.create(
        name="claw-lock", server_type=ServerType(name="cx22"), image=Image(name="ubuntu-24.04")
    )
    with pytest.raises(APIException) as busy:
        hcloud_client.servers.reboot(response.server)
    assert busy.value.code == "locked"
    response.action.wait_until_finished()
    hcloud_client.servers.reboot(response.server).wait_until_finished()

    hcloud_client.servers.change_protection(response.server, delete=True).wait_until_finished()
    with pytest.raises(APIException) as protected:
        hcloud_client.servers.delete(response.server)
    assert protected.value.code == "protected"
    assert hcloud_client.servers.get_by_id(response.server.id).protection["delete"] is True


def test_rate_limit_headers_and_exhaustion(tmp_path):
    from tests.fixtures.sandbox import start_sandbox

    box = start_sandbox(tmp_path / "state.json", hcloud_rate_limit=5)
    try:
        statuses, remaining = [], []
        for _ in range(7):
            response = raw(box, "GET", "/locations")
            statuses.append(response.status_code)
            remaining.append(response.headers["RateLimit-Remaining"])
            assert response.headers["RateLimit-Limit"] == "5"
            assert int(response.headers["RateLimit-Reset"]) > 0
        assert statuses[:4] == [200] * 4
        assert 429 in statuses
        limited = raw(box, "GET", "/locations")
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        box.stop()


def test_catalogue_server_types_images_locations(sandbox, hcloud_client):
    cx22 = hcloud_client.server_types.get_by_name("cx22")
    assert cx22.cores == 2 and cx22.architecture == "x86"
    arm = hcloud_client.server_types.get_by_name("cax11")
    assert arm.architecture == "arm"
    x86_image = hcloud_client.images.get_by_name_and_architecture("ubuntu-24.04", "x86")
    arm_image = hcloud_client.images.get_by_name_and_architecture("ubuntu-24.04", "arm")
    assert x86_image.id != arm_image.id and arm_image.architecture == "arm"
    assert {loc.name for loc in hcloud_client.locations.get_all()} >= {"fsn1", "nbg1", "hel1", "ash"}
    server = create_server(hcloud_client, "claw-arm-check").server
    assert hcloud_client.servers.get_by_id(server.id).image.architecture == "x86"
    arm_server = hcloud_client.servers.create(
        name="claw-arm", server_type=ServerType(name="cax11"), image=Image(name="ubuntu-24.04")
    ).server
    assert arm_server.image.id == arm_image.id


def test_firewall_lifecycle(sandbox, hcloud_client):
    rules = [
        FirewallRule(direction="in", protocol="tcp", port="443", source_ips=["0.0.0.0/0", "::/0"]),
        FirewallRule(direction="in", protocol="icmp", source_ips=["0.0.0.0/0"]),
    ]
    created = hcloud_client.firewalls.create(name="claw-fw", rules=rules, labels={"app": "claw"})
    for action in created.actions:
        action.wait_until_finished()
    firewall = created.firewall
    server = create_server(hcloud_client, "claw-fw-server", firewalls=[firewall]).server
    assert [fw.firewall.id for fw in hcloud_client.servers.get_by_id(server.id).public_net.firewalls] == [
        firewall.id
    ]
    applied = hcloud_client.firewalls.get_by_id(firewall.id).applied_to
    assert [(r.type, r.server.id) for r in applied] == [("server", server.id)]

    with pytest.raises(APIException) as in_use:
        hcloud_client.firewalls.delete(firewall)
    assert in_use.value.code == "resource_in_use"
    with pytest.raises(APIException) as again:
        hcloud_client.firewalls.apply_to_resources(firewall, [FirewallResource(type="server", server=server)])
    assert again.value.code == "firewall_already_applied"

    for action in hcloud_client.firewalls.set_rules(firewall, rules[:1]):
        action.wait_until_finished()
    assert len(hcloud_client.firewalls.get_by_id(firewall.id).rules) == 1

    for action in hcloud_client.firewalls.remove_from_resources(
        firewall, [FirewallResource(type="server", server=server)]
    ):
        action.wait_until_finished()
    assert hcloud_client.servers.get_by_id(server.id).public_net.firewalls == []

    selector = FirewallResource(
        type="label_selector", label_selector=FirewallResourceLabelSelector(selector="app=claw")
    )
    hcloud_client.firewalls.apply_to_resources(firewall, [selector])
    hcloud_client.servers.update(server, labels={"app": "claw"})
    assert [fw.firewall.id for fw in hcloud_client.servers.get_by_id(server.id).public_net.firewalls] == [
        firewall.id
    ]
    hcloud_client.firewalls.remove_from_resources(firewall, [selector])
    assert hcloud_client.firewalls.delete(firewall) is True
    assert hcloud_client.firewalls.get_all() == []


def test_firewall_rules_are_validated(sandbox, hcloud_client):
    for bad in [
        {"direction": "in", "protocol": "tcp", "source_ips": ["0.0.0.0/0"]},  # port missing
        {"direction": "in", "protocol": "tcp", "port": "99999", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "icmp", "port": "80", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "tcp", "port": "80"},  # no sources
        {"direction": "sideways", "protocol": "tcp", "port": "80", "source_ips": ["0.0.0.0/0"]},
        {"direction": "in", "protocol": "tcp", "port": "80", "source_ips": ["10.0.0.1/8"]},  # host bits
    ]:
        response = raw(sandbox, "POST", "/firewalls", json={"name": "fw", "rules": [bad]})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid_input"
    assert raw(sandbox, "GET", "/firewalls").json()["firewalls"] == []


def test_ssh_keys_and_create_with_key(sandbox, hcloud_client):
    key = hcloud_client.ssh_keys.create(name="operator", public_key=ED25519)
    assert len(key.fingerprint.split(":")) == 16
    with pytest.raises(APIException) as duplicate:
        hcloud_client.ssh_keys.create(name="operator-2", public_key=ED25519)
    assert duplicate.value.code == "uniqueness_error"
    with pytest.raises(APIException) as invalid:
        hcloud_client.ssh_keys.create(name="broken", public_key="not a key")
    assert invalid.value.code == "invalid_input"
    response = hcloud_client.servers.create(
        name="claw-keyed",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        ssh_keys=[SSHKey(name="operator")],
    )
    assert response.root_password is None
    hcloud_client.ssh_keys.delete(key)
    assert hcloud_client.ssh_keys.get_all() == []


def test_rebuild_and_start_after_create_false(sandbox, hcloud_client):
    response = hcloud_client.servers.create(
        name="claw-cold",
        server_type=ServerType(name="cx22"),
        image=Image(name="ubuntu-24.04"),
        start_after_create=False,
    )
    response.action.wait_until_finished()
    assert response.next_actions == []
    assert hcloud_client.servers.get_by_id(response.server.id).status == "off"
    rebuild = hcloud_client.servers.rebuild(response.server, Image(name="debian-12"))
    rebuild.action.wait_until_finished()
    server = hcloud_client.servers.get_by_id(response.server.id)
    assert server.image.name == "debian-12" and server.status == "running"
