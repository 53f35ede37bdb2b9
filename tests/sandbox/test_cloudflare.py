"""The Cloudflare stand-in, driven by the official `cloudflare` Python SDK."""

from __future__ import annotations

import cloudflare
import httpx
import pytest


def error_codes(exc: cloudflare.APIStatusError) -> list[int]:
    return [error["code"] for error in exc.body["errors"]] if isinstance(exc.body, dict) else []


def test_token_verify_and_zone_lookup(sandbox, cloudflare_client):
    verified = cloudflare_client.user.tokens.verify()
    assert verified.status == "active"
    zones = cloudflare_client.zones.list(name=sandbox.zone_name)
    assert [zone.id for zone in zones.result] == [sandbox.zone_id]
    zone = cloudflare_client.zones.get(zone_id=sandbox.zone_id)
    assert zone.name == "clawdet.test" and zone.status == "active"
    assert cloudflare_client.zones.list(name="elsewhere.example").result == []


def test_proxied_a_record_lifecycle(sandbox, cloudflare_client):
    record = cloudflare_client.dns.records.create(
        zone_id=sandbox.zone_id,
        name="alice",
        type="A",
        content="127.10.0.7",
        ttl=1,
        proxied=True,
        comment="clawdet instance alice",
    )
    assert record.name == "alice.clawdet.test"  # relative names become FQDNs
    assert record.proxied is True and record.proxiable is True and record.ttl == 1
    assert record.comment == "clawdet instance alice"

    fetched = cloudflare_client.dns.records.get(dns_record_id=record.id, zone_id=sandbox.zone_id)
    assert fetched.content == "127.10.0.7"

    replaced = cloudflare_client.dns.records.update(
        dns_record_id=record.id,
        zone_id=sandbox.zone_id,
        name="alice.clawdet.test",
        type="A",
        content="127.10.0.8",
        ttl=300,
        proxied=False,
    )
    assert replaced.content == "127.10.0.8" and replaced.ttl == 300 and replaced.proxied is False
    assert replaced.comment is None  # PUT replaces the whole record

    patched = cloudflare_client.dns.records.edit(
        dns_record_id=record.id,
        zone_id=sandbox.zone_id,
        name="alice.clawdet.test",
        type="A",
        ttl=300,
        proxied=True,
    )
    assert patched.content == "127.10.0.8" and patched.proxied is True and patched.ttl == 1

    deleted = cloudflare_client.dns.records.delete(dns_record_id=record.id, zone_id=sandbox.zone_id)
    assert deleted.id == record.id
    with pytest.raises(cloudflare.NotFoundError) as missing:
        cloudflare_client.dns.records.get(dns_record_id=record.id, zone_id=sandbox.zone_id)
    assert error_codes(missing.value) == [81044]


def test_list_filters_and_pagination(sandbox, cloudflare_client):
    for index in range(12):
        cloudflare_client.dns.records.create(
            zone_id=sandbox.zone_id,
            name=f"claw{index:02d}",
            type="A",
            content=f"127.10.0.{index + 1}",
            ttl=1,
            proxied=True,
        )
    cloudflare_client.dns.records.create(
        zone_id=sandbox.zone_id, name="_verify", type="TXT", content="hello", ttl=300
    )
    first = cloudflare_client.dns.records.list(
        zone_id=sandbox.zone_id, per_page=5, page=1, type="A", order="name"
    )
    assert [r.name for r in first.result] == [f"claw{i:02d}.clawdet.test" for i in range(5)]
    assert first.result_info.total_count == 12 and first.result_info.total_pages == 3
    everything = list(cloudflare_client.dns.records.list(zone_id=sandbox.zone_id, per_page=5))
    assert len(everything) == 13  # the SDK's auto-pagination walks result_info

    by_name = cloudflare_client.dns.records.list(
        zone_id=sandbox.zone_id, name={"exact": "claw03.clawdet.test"}
    )
    assert [r.content for r in by_name.result] == ["127.10.0.4"]
    by_content = cloudflare_client.dns.records.list(zone_id=sandbox.zone_id, content={"exact": "127.10.0.12"})
    assert [r.name for r in by_content.result] == ["claw11.clawdet.test"]
    by_type = cloudflare_client.dns.records.list(zone_id=sandbox.zone_id, type="TXT")
    assert [r.name for r in by_type.result] == ["_verify.clawdet.test"]
    prefixed = cloudflare_client.dns.records.list(zone_id=sandbox.zone_id, name={"startswith": "claw1"})
    assert sorted(r.name for r in prefixed.result) == ["claw10.clawdet.test", "claw11.clawdet.test"]


def test_duplicates_and_invalid_input_are_refused(sandbox, cloudflare_client):
    zone = sandbox.zone_id
    cloudflare_client.dns.records.create(
        zone_id=zone, name="bob", type="A", content="127.10.0.9", ttl=1, proxied=True
    )
    with pytest.raises(cloudflare.BadRequestError) as identical:
        cloudflare_client.dns.records.create(
            zone_id=zone, name="bob.clawdet.test", type="A", content="127.10.0.9", ttl=1, proxied=True
        )
    assert error_codes(identical.value) == [81058]
    with pytest.raises(cloudflare.BadRequestError) as cname_clash:
        cloudflare_client.dns.records.create(
            zone_id=zone, name="bob", type="CNAME", content="example.com", ttl=1
        )
    assert error_codes(cname_clash.value) == [81053]
    with pytest.raises(cloudflare.BadRequestError) as bad_ip:
        cloudflare_client.dns.records.create(zone_id=zone, name="carol", type="A", content="not-an-ip", ttl=1)
    assert error_codes(bad_ip.value) == [9005]
    with pytest.raises(cloudflare.BadRequestError) as bad_ttl:
        cloudflare_client.dns.records.create(zone_id=zone, name="carol", type="A", content="127.0.0.5", ttl=5)
    assert error_codes(bad_ttl.value) == [9021]
    with pytest.raises(cloudflare.BadRequestError) as not_proxiable:
        cloudflare_client.dns.records.create(
            zone_id=zone, name="carol", type="TXT", content="x", ttl=1, proxied=True
        )
    assert error_codes(not_proxiable.value) == [9041]

    raw = httpx.post(
        f"{sandbox.cloudflare_url}/zones/{zone}/dns_records",
        content=b"[1, 2",
        headers={"Authorization": f"Bearer {sandbox.cloudflare_token}"},
    )
    assert raw.status_code == 400 and raw.json()["success"] is False
    assert raw.json()["errors"][0]["code"] == 9207
    names = [r.name for r in cloudflare_client.dns.records.list(zone_id=zone)]
    assert names == ["bob.clawdet.test"]  # nothing half-created


def test_unknown_zone_and_record_and_bad_tokens(sandbox, cloudflare_client):
    with pytest.raises(cloudflare.NotFoundError) as bad_zone_format:
        cloudflare_client.dns.records.list(zone_id="nope")
    assert 7003 in error_codes(bad_zone_format.value)
    with pytest.raises(cloudflare.PermissionDeniedError):
        cloudflare_client.dns.records.list(zone_id="0" * 32)
    with pytest.raises(cloudflare.NotFoundError):
        cloudflare_client.dns.records.delete(dns_record_id="f" * 32, zone_id=sandbox.zone_id)

    impostor = cloudflare.Cloudflare(api_token="A" * 40, base_url=sandbox.cloudflare_url, max_retries=0)
    with pytest.raises(cloudflare.AuthenticationError) as invalid:
        impostor.zones.list()
    assert error_codes(invalid.value) == [9109]
    with pytest.raises(cloudflare.AuthenticationError) as verify:
        impostor.user.tokens.verify()
    assert error_codes(verify.value) == [1000]
    malformed = httpx.get(sandbox.cloudflare_url + "/zones", headers={"Authorization": "Bearer short"})
    assert malformed.status_code == 400 and malformed.json()["errors"][0]["code"] == 6003
    missing = httpx.get(sandbox.cloudflare_url + "/zones")
    assert missing.status_code == 400 and missing.json()["errors"][0]["code"] == 9106
