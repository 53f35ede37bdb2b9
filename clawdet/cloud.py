"""Which cloud the instances live in, and small API clients for what the engine does not do:
listing the fleet in a few paginated calls, sweeping orphans, rebooting a server.

Real Hetzner and Cloudflare when HCLOUD_TOKEN is set; otherwise the sandbox that `clawdet
sandbox` (or `clawdet run`) started, found through the description it writes.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clawdet.errors import UserFacingError
from clawdet.settings import Settings
from clawdet.tls import verifying_context

log = logging.getLogger(__name__)

HETZNER_API = "https://api.hetzner.cloud/v1"
# Stack config the platform writes for the providers (besides the program's own keys), removed
# again when its setting is unset.
PROVIDER_CONFIG_KEYS = ("hcloud:pollInterval",)
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


def sandbox_description_path(settings: Settings) -> Path:
    return settings.data_dir / "sandbox" / "sandbox.json"


@dataclass(frozen=True)
class CloudTarget:
    sandbox: bool
    hcloud_token: str
    hcloud_endpoint: str
    cloudflare_token: str
    cloudflare_base_url: str
    zone_id: str
    base_domain: str
    health_url_template: str
    ssh_port: int = 22
    control_plane_ssh_cidrs: str = ""  # where workers connect from; servers open SSH only to them
    paused_page_ipv4: str = ""  # the web app's address: a paused instance's name points here
    hcloud_poll_interval: str = ""  # empty: the provider's default

    def provider_config(self) -> dict[str, tuple[str, bool]]:
        """Stack config for the providers (PROVIDER_CONFIG_KEYS), as {key: (text, is_secret)}."""
        if not self.hcloud_poll_interval:
            return {}
        return {"hcloud:pollInterval": (self.hcloud_poll_interval, False)}

    def provider_env(self) -> dict[str, str]:
        """What the hcloud and cloudflare plugins read (kept out of the committed stack files)."""
        return {
            "HCLOUD_TOKEN": self.hcloud_token,
            "HCLOUD_ENDPOINT": self.hcloud_endpoint,
            "CLOUDFLARE_API_TOKEN": self.cloudflare_token,
            "CLOUDFLARE_BASE_URL": self.cloudflare_base_url,
        }

    def health_url(self, *, fqdn: str, ipv4: str | None) -> str | None:
        if "{ipv4}" in self.health_url_template and not ipv4:
            return None
        return self.health_url_template.format(fqdn=fqdn, ipv4=ipv4)

    def gateway_url(self, *, fqdn: str, ipv4: str | None) -> str | None:
        """Where the gateway's HTTP API answers: the health URL without its /healthz."""
        url = self.health_url(fqdn=fqdn, ipv4=ipv4)
        return url.removesuffix("/healthz") if url else None


def resolve(settings: Settings) -> CloudTarget:
    env = settings.cloud_env
    if not settings.sandbox:
        missing = [
            k for k in ("HCLOUD_TOKEN", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ZONE_ID") if not env.get(k)
        ]
        if missing:
            raise UserFacingError(
                "cloud_not_configured",
                f"Not in sandbox mode, but {', '.join(missing)} is not set.",
                "Set every cloud variable listed in .env.example.",
                status=503,
            )
        return CloudTarget(
            sandbox=False,
            hcloud_token=env["HCLOUD_TOKEN"],
            hcloud_endpoint=env.get("HCLOUD_ENDPOINT", HETZNER_API),
            cloudflare_token=env["CLOUDFLARE_API_TOKEN"],
            cloudflare_base_url=env.get("CLOUDFLARE_BASE_URL", CLOUDFLARE_API),
            zone_id=env["CLOUDFLARE_ZONE_ID"],
            base_domain=settings.base_domain,
            health_url_template=env.get("HEALTH_URL_TEMPLATE", "https://{fqdn}/healthz"),
            ssh_port=settings.instance_ssh_port,
            control_plane_ssh_cidrs=settings.control_plane_ssh_cidrs,
            paused_page_ipv4=settings.paused_page_ipv4,
            hcloud_poll_interval=env.get("HCLOUD_POLL_INTERVAL", ""),
        )
    path = sandbox_description_path(settings)
    try:
        sandbox = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise UserFacingError(
            "cloud_not_configured",
            "No cloud credentials are set and no sandbox cloud is running.",
            "Start `clawdet sandbox` (make run does), or set HCLOUD_TOKEN and the Cloudflare variables.",
            status=503,
        ) from exc
    return CloudTarget(
        sandbox=True,
        hcloud_token=sandbox["hcloud_token"],
        hcloud_endpoint=sandbox["hcloud_url"],
        cloudflare_token=sandbox["cloudflare_token"],
        cloudflare_base_url=sandbox["cloudflare_url"],
        zone_id=sandbox["zone_id"],
        base_domain=sandbox["zone_name"],
        health_url_template=env.get(
            "HEALTH_URL_TEMPLATE", f"http://{{ipv4}}:{sandbox['gateway_port']}/healthz"
        ),
        ssh_port=int(sandbox.get("ssh_port", 2222)),
        control_plane_ssh_cidrs=settings.control_plane_ssh_cidrs or "127.0.0.0/8",
        paused_page_ipv4=settings.paused_page_ipv4 or "127.0.0.1",
        # The sandbox says how often to ask it (its actions are quick); the setting wins.
        hcloud_poll_interval=env.get("HCLOUD_POLL_INTERVAL") or sandbox.get("hcloud_poll_interval", ""),
    )


class ApiError(Exception):
    def __init__(self, service: str, status: int, message: str):
        super().__init__(f"{service} answered {status}: {message}")
        self.status = status


class _Api:
    """JSON over HTTP with a timeout and bounded retries on 429, 5xx and network errors."""

    service = "api"
    attempts = 5

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            verify=verifying_context(),
        )
        self.calls = 0

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs) -> dict[str, Any]:
        for attempt in range(1, self.attempts + 1):
            self.calls += 1
            try:
                response = self.http.request(method, path.lstrip("/"), **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.attempts:
                    raise ApiError(self.service, 0, type(exc).__name__) from exc
                self._sleep(attempt, None)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == self.attempts:
                    raise ApiError(self.service, response.status_code, self._message(response))
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            if response.status_code >= 400:
                raise ApiError(self.service, response.status_code, self._message(response))
            return response.json() if response.content else {}
        raise AssertionError("unreachable")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(2**attempt * 0.1, 5.0) * random.uniform(0.5, 1.0)
        if retry_after and retry_after.isdigit():
            delay = min(float(retry_after), 10.0)
        log.info("%s: retrying in %.2fs (attempt %d)", self.service, delay, attempt)
        time.sleep(delay)

    @staticmethod
    def _message(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.reason_phrase
        error = body.get("error") or (body.get("errors") or [{}])[0]
        return str(error.get("message") or error.get("code") or response.reason_phrase)[:200]


class Hetzner(_Api):
    service = "hetzner"

    def servers(self, label_selector: str) -> list[dict[str, Any]]:
        return list(self._paged("servers", "servers", label_selector=label_selector))

    def firewalls(self, label_selector: str) -> list[dict[str, Any]]:
        return list(self._paged("firewalls", "firewalls", label_selector=label_selector))

    def _paged(self, path: str, key: str, **params) -> Iterator[dict[str, Any]]:
        page = 1
        while page:
            body = self.request("GET", path, params={**params, "page": page, "per_page": 50})
            yield from body.get(key, [])
            page = (body.get("meta", {}).get("pagination") or {}).get("next_page")

    def newest_snapshot(self, label_selector: str) -> dict[str, Any] | None:
        """The newest available snapshot with these labels (a golden image), or None."""
        params = {"type": "snapshot", "status": "available", "label_selector": label_selector}
        body = self.request("GET", "images", params={**params, "sort": "created:desc", "per_page": 50})
        images = sorted(body.get("images", []), key=lambda i: (i["created"], i["id"]), reverse=True)
        return images[0] if images else None

    def image(self, image_id: int | str) -> dict[str, Any] | None:
        return self._found(f"images/{image_id}", "image")

    def volumes(self, label_selector: str) -> list[dict[str, Any]]:
        return list(self._paged("volumes", "volumes", label_selector=label_selector))

    def delete_volume(self, volume_id: int | str, wait: float = 60.0) -> None:
        """Detach (if attached) and delete; the data is gone for good."""
        volume = self._found(f"volumes/{volume_id}", "volume")
        if volume is None:
            return
        deadline = time.monotonic() + wait
        while True:
            try:
                if volume.get("server") is not None:
                    self.request("POST", f"volumes/{volume_id}/actions/detach", json={})
                return self._ignore_missing("DELETE", f"volumes/{volume_id}")
            except ApiError as exc:  # a server deleted a moment ago, a detach still running: locked
                if exc.status not in (400, 409, 422, 423) or time.monotonic() > deadline:
                    raise
            time.sleep(1.0)
            volume = self._found(f"volumes/{volume_id}", "volume")
            if volume is None:
                return

    def wait_action(
        self, action: dict[str, Any], *, timeout: float = 300.0, cancelled: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        """Poll an action until it is no longer running; an action in error raises."""
        deadline = time.monotonic() + timeout
        while action.get("status") == "running" and not cancelled():
            if time.monotonic() > deadline:
                raise ApiError("hcloud", 504, f"{action.get('command')} still running after {timeout:.0f}s")
            time.sleep(0.5)
            action = self.request("GET", f"actions/{action['id']}")["action"]
        if action.get("status") == "error":
            error = action.get("error") or {}
            raise ApiError(
                "hcloud", 422, f"{action.get('command')} failed: {error.get('message', 'unknown')}"
            )
        return action

    def power_down(
        self, server_id: int | str, *, grace: float = 60.0, cancelled: Callable[[], bool] = lambda: False
    ) -> None:
        """ACPI shutdown (the OS unmounts its disks), then power off if it is not off in time."""
        try:
            self.wait_action(self.server_action(server_id, "shutdown"), cancelled=cancelled)
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not cancelled():
            if self.request("GET", f"servers/{server_id}")["server"]["status"] == "off":
                return
            time.sleep(1.0)
        self.wait_action(self.server_action(server_id, "poweroff"), cancelled=cancelled)

    def server(self, server_id: int | str) -> dict[str, Any] | None:
        return self._found(f"servers/{server_id}", "server")

    def _found(self, path: str, key: str) -> dict[str, Any] | None:
        """One resource, or None when the API says it does not exist."""
        try:
            return self.request("GET", path)[key]
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def delete_server(self, server_id: int | str) -> None:
        self._ignore_missing("DELETE", f"servers/{server_id}")

    def delete_firewall(self, firewall_id: int | str) -> None:
        self._ignore_missing("DELETE", f"firewalls/{firewall_id}")

    def server_action(self, server_id: int | str, action: str) -> dict[str, Any]:
        return self.request("POST", f"servers/{server_id}/actions/{action}").get("action", {})

    def _ignore_missing(self, method: str, path: str) -> None:
        try:
            self.request(method, path)
        except ApiError as exc:
            if exc.status != 404:
                raise


class Cloudflare(_Api):
    service = "cloudflare"

    def records(self, zone_id: str, **filters) -> list[dict[str, Any]]:
        out, page = [], 1
        while True:
            body = self.request(
                "GET", f"zones/{zone_id}/dns_records", params={**filters, "page": page, "per_page": 1000}
            )
            out += body.get("result", [])
            info = body.get("result_info") or {}
            if page >= int(info.get("total_pages") or 1):
                return out
            page += 1

    def delete_record(self, zone_id: str, record_id: str) -> None:
        try:
            self.request("DELETE", f"zones/{zone_id}/dns_records/{record_id}")
        except ApiError as exc:
            if exc.status != 404:
                raise


def clients(target: CloudTarget) -> tuple[Hetzner, Cloudflare]:
    return (
        Hetzner(target.hcloud_endpoint, target.hcloud_token),
        Cloudflare(target.cloudflare_base_url, target.cloudflare_token),
    )
