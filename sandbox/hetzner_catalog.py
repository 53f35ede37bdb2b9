"""Hetzner Cloud's read-only catalogue: locations, datacenters, server types, images.

IDs, names and shapes follow the public API; prices are indicative.
"""

from __future__ import annotations

from typing import Any

LOCATIONS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "fsn1",
        "description": "Falkenstein DC Park 1",
        "country": "DE",
        "city": "Falkenstein",
        "latitude": 50.47612,
        "longitude": 12.370071,
        "network_zone": "eu-central",
    },
    {
        "id": 2,
        "name": "nbg1",
        "description": "Nuremberg DC Park 1",
        "country": "DE",
        "city": "Nuremberg",
        "latitude": 49.452102,
        "longitude": 11.076665,
        "network_zone": "eu-central",
    },
    {
        "id": 3,
        "name": "hel1",
        "description": "Helsinki DC Park 1",
        "country": "FI",
        "city": "Helsinki",
        "latitude": 60.169855,
        "longitude": 24.938379,
        "network_zone": "eu-central",
    },
    {
        "id": 4,
        "name": "ash",
        "description": "Ashburn, VA",
        "country": "US",
        "city": "Ashburn, VA",
        "latitude": 39.045821,
        "longitude": -77.487073,
        "network_zone": "us-east",
    },
    {
        "id": 5,
        "name": "hil",
        "description": "Hillsboro, OR",
        "country": "US",
        "city": "Hillsboro, OR",
        "latitude": 45.54222,
        "longitude": -122.951924,
        "network_zone": "us-west",
    },
    {
        "id": 6,
        "name": "sin",
        "description": "Singapore",
        "country": "SG",
        "city": "Singapore",
        "latitude": 1.283333,
        "longitude": 103.833333,
        "network_zone": "ap-southeast",
    },
]

_DATACENTER_NAMES = {
    "fsn1": ("fsn1-dc14", 4),
    "nbg1": ("nbg1-dc3", 2),
    "hel1": ("hel1-dc2", 3),
    "ash": ("ash-dc1", 5),
    "hil": ("hil-dc1", 6),
    "sin": ("sin-dc1", 7),
}

EU = ("fsn1", "nbg1", "hel1")
EVERYWHERE = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")

# name, id, cores, memory GB, disk GB, cpu_type, architecture, category, locations, monthly EUR
_SERVER_TYPES = [
    ("cx22", 104, 2, 4.0, 40, "shared", "x86", "cost_optimized", EU, 3.79),
    ("cx32", 105, 4, 8.0, 80, "shared", "x86", "cost_optimized", EU, 6.80),
    ("cx42", 106, 8, 16.0, 160, "shared", "x86", "cost_optimized", EU, 16.40),
    ("cx52", 107, 16, 32.0, 320, "shared", "x86", "cost_optimized", EU, 32.40),
    ("cx23", 114, 2, 4.0, 40, "shared", "x86", "cost_optimized", EU, 2.99),
    ("cx33", 115, 4, 8.0, 80, "shared", "x86", "cost_optimized", EU, 4.99),
    ("cx43", 116, 8, 16.0, 160, "shared", "x86", "cost_optimized", EU, 9.49),
    ("cx53", 117, 16, 32.0, 320, "shared", "x86", "cost_optimized", EU, 17.49),
    ("cpx11", 22, 2, 2.0, 40, "shared", "x86", "regular_purpose", EVERYWHERE, 4.35),
    ("cpx21", 23, 3, 4.0, 80, "shared", "x86", "regular_purpose", EVERYWHERE, 7.55),
    ("cpx31", 24, 4, 8.0, 160, "shared", "x86", "regular_purpose", EVERYWHERE, 13.60),
    ("cpx41", 25, 8, 16.0, 240, "shared", "x86", "regular_purpose", EVERYWHERE, 25.20),
    ("cpx51", 26, 16, 32.0, 360, "shared", "x86", "regular_purpose", EVERYWHERE, 54.90),
    ("cpx12", 108, 1, 2.0, 40, "shared", "x86", "regular_purpose", EVERYWHERE, 6.49),
    ("cpx22", 109, 2, 4.0, 80, "shared", "x86", "regular_purpose", EVERYWHERE, 7.99),
    ("cpx32", 110, 4, 8.0, 160, "shared", "x86", "regular_purpose", EVERYWHERE, 13.99),
    ("cpx42", 111, 8, 16.0, 320, "shared", "x86", "regular_purpose", EVERYWHERE, 25.49),
    ("cax11", 45, 2, 4.0, 40, "shared", "arm", "cost_optimized", EU, 3.79),
    ("cax21", 93, 4, 8.0, 80, "shared", "arm", "cost_optimized", EU, 6.49),
    ("cax31", 94, 8, 16.0, 160, "shared", "arm", "cost_optimized", EU, 12.49),
    ("cax41", 95, 16, 32.0, 320, "shared", "arm", "cost_optimized", EU, 24.49),
    ("ccx13", 96, 2, 8.0, 80, "dedicated", "x86", "general_purpose", EVERYWHERE, 12.49),
    ("ccx23", 97, 4, 16.0, 160, "dedicated", "x86", "general_purpose", EVERYWHERE, 24.49),
    ("ccx33", 98, 8, 32.0, 240, "dedicated", "x86", "general_purpose", EVERYWHERE, 48.49),
]

# name, description, os_flavor, os_version, x86 id, arm id
_SYSTEM_IMAGES = [
    ("ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", 67794396, 103908130),
    ("ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", 161547269, 161547270),
    ("debian-12", "Debian 12", "debian", "12", 114690387, 114690389),
    ("debian-13", "Debian 13", "debian", "13", 310557660, 310557661),
    ("rocky-9", "Rocky Linux 9", "rocky", "9", 76766499, 103910022),
    ("fedora-42", "Fedora 42", "fedora", "42", 228373466, 228373467),
]
_APP_IMAGES = [("docker-ce", "Docker CE", "ubuntu", "24.04", 167756405, 167756406)]


def _location(name: str) -> dict[str, Any]:
    return next(location for location in LOCATIONS if location["name"] == name)


def _price(location: str, monthly: float) -> dict[str, Any]:
    def money(value: float) -> dict[str, str]:
        return {"net": f"{value:.4f}", "gross": f"{value * 1.19:.4f}"}

    return {
        "location": location,
        "price_hourly": money(monthly / 730),
        "price_monthly": money(monthly),
        "included_traffic": 21990232555520 if location in EU else 1099511627776,
        "price_per_tb_traffic": money(1.0),
    }


def _server_type(entry: tuple[Any, ...]) -> dict[str, Any]:
    name, type_id, cores, memory, disk, cpu_type, arch, category, locations, monthly = entry
    return {
        "id": type_id,
        "name": name,
        "description": name.upper(),
        "category": category,
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "deprecated": False,
        "deprecation": None,
        "prices": [_price(location, monthly) for location in locations],
        "storage_type": "local",
        "cpu_type": cpu_type,
        "architecture": arch,
        "included_traffic": 0,
        "locations": [
            {
                "id": _location(location)["id"],
                "name": location,
                "deprecation": None,
                "available": True,
                "recommended": True,
            }
            for location in locations
        ],
    }


SERVER_TYPES: list[dict[str, Any]] = sorted(
    (_server_type(entry) for entry in _SERVER_TYPES), key=lambda t: t["id"]
)


def _image(entry: tuple[Any, ...], arch: str, image_type: str) -> dict[str, Any]:
    name, description, flavor, version, x86_id, arm_id = entry
    return {
        "id": x86_id if arch == "x86" else arm_id,
        "type": image_type,
        "status": "available",
        "name": name,
        "description": description,
        "image_size": None,
        "disk_size": 5,
        "created": "2024-04-25T12:00:00+00:00",
        "created_from": None,
        "bound_to": None,
        "os_flavor": flavor,
        "os_version": version,
        "rapid_deploy": True,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": {},
        "architecture": arch,
    }


IMAGES: list[dict[str, Any]] = sorted(
    [_image(entry, arch, "system") for entry in _SYSTEM_IMAGES for arch in ("x86", "arm")]
    + [_image(entry, arch, "app") for entry in _APP_IMAGES for arch in ("x86", "arm")],
    key=lambda image: image["id"],
)


def _datacenter(location: dict[str, Any]) -> dict[str, Any]:
    name, dc_id = _DATACENTER_NAMES[location["name"]]
    type_ids = [t["id"] for t in SERVER_TYPES if location["name"] in {loc["name"] for loc in t["locations"]}]
    return {
        "id": dc_id,
        "name": name,
        "description": f"{location['city']} DC",
        "location": location,
        "server_types": {"supported": type_ids, "available": type_ids, "available_for_migration": type_ids},
    }


DATACENTERS: list[dict[str, Any]] = sorted(
    (_datacenter(location) for location in LOCATIONS), key=lambda d: d["id"]
)


def find_by_id_or_name(items: list[dict[str, Any]], id_or_name: object) -> dict[str, Any] | None:
    for item in items:
        if isinstance(id_or_name, int) and not isinstance(id_or_name, bool) and item["id"] == id_or_name:
            return item
        if isinstance(id_or_name, str) and (item["name"] == id_or_name or str(item["id"]) == id_or_name):
            return item
    return None


def location_named(name: str) -> dict[str, Any] | None:
    return find_by_id_or_name(LOCATIONS, name)


def datacenter_for_location(name: str) -> dict[str, Any]:
    return next(dc for dc in DATACENTERS if dc["location"]["name"] == name)


def image_for(id_or_name: object, architecture: str) -> dict[str, Any] | None:
    """An image by ID, or by name for the server type's architecture (names repeat per arch)."""
    for image in IMAGES:
        if isinstance(id_or_name, int) and not isinstance(id_or_name, bool) and image["id"] == id_or_name:
            return image
        if isinstance(id_or_name, str):
            if str(image["id"]) == id_or_name:
                return image
            if image["name"] == id_or_name and image["architecture"] == architecture:
                return image
    return None
