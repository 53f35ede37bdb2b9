"""``Sandbox``: every fake service on one asyncio loop in a background thread.

    with Sandbox(tmp_path / "sandbox.json", boot_delay=0.2) as sandbox:
        client = hcloud.Client(token=sandbox.hcloud_token, api_endpoint=sandbox.hcloud_url)

Services listen on 127.0.0.1 (ephemeral ports unless ``port_base`` is given); each fake
server's gateway listens on its own 127.x.y.z at ``gateway_port``. Python-side controls
(faults, drift, X users) are thread-safe: they run on the loop and wait for the result.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import ipaddress
import json
import logging
import os
import pathlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import openclaw
from .addresses import AddressAllocator
from .clock import make_clock
from .cloudflare import Cloudflare
from .control import build_control_app
from .faults import FaultInjector
from .gateways import GatewayFleet
from .hetzner import HetznerCloud
from .http_common import JournalEntry, RequestJournal
from .llm import LLMUpstream
from .s3 import S3Server, new_credentials
from .state import StateStore
from .x_oauth import XOAuth

log = logging.getLogger(__name__)

PRIMARY_LLM = "llm"
_SERVICE_ORDER = ("hetzner", "cloudflare", "x", PRIMARY_LLM, "control")
S3_PORT_OFFSET = 19  # after the extra LLM upstreams


class Drift:
    """Out-of-band changes, as if someone used the provider's console behind our back."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def delete_server(self, server_id: int) -> None:
        """The server vanishes (its gateway stops); its firewall and DNS record stay."""
        self._sandbox.call(self._sandbox._hetzner.drift_delete_server, server_id)

    def power_off_server(self, server_id: int) -> None:
        self._sandbox.call(self._sandbox._hetzner.drift_power_off, server_id)

    def kill_gateway(self, server_id: int) -> None:
        """The server stays ``running`` but its gateway stops answering."""
        self._sandbox.call(self._sandbox._hetzner.drift_kill_gateway, server_id)

    def revive_gateway(self, server_id: int) -> None:
        self._sandbox.call(self._sandbox._hetzner.drift_revive_gateway, server_id)

    def set_dns_content(self, record_id: str, content: str) -> dict[str, Any]:
        return self._sandbox.call(self._sandbox._cloudflare.drift_set_content, record_id, content)

    def delete_dns_record(self, record_id: str) -> None:
        self._sandbox.call(self._sandbox._cloudflare.drift_delete_record, record_id)


class XUsers:
    """Chooses who approves on the fake X authorize page."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def add_user(self, username: str, name: str | None = None, user_id: str | None = None) -> dict[str, Any]:
        return dict(self._sandbox.call(self._sandbox._x.add_user, username, name, user_id))

    def users(self) -> list[dict[str, Any]]:
        return self._sandbox.call(lambda: [dict(u) for u in self._sandbox._x.users])

    def auto_approve(self, username: str | None) -> None:
        self._sandbox.call(self._sandbox._x.auto_approve, username)

    def allow_redirect_uris(self, uris: list[str] | None) -> None:
        def apply() -> None:
            self._sandbox._x.allowed_redirect_uris = list(uris) if uris is not None else None

        self._sandbox.call(apply)


class Sandbox:
    def __init__(
        self,
        state_path: pathlib.Path | str,
        *,
        boot_delay: float = 1.0,
        gateway_port: int = 18789,
        ssh_port: int = 2222,
        device_wait: float = 600.0,
        action_delay: float = 0.2,
        host: str = "127.0.0.1",
        port_base: int = 0,
        seed: int = 0,
        zone_name: str = "clawdet.test",
        server_network: str = "127.10.0.0/16",
        hcloud_rate_limit: int = 3600,
        server_limit: int = 10000,
        x_code_ttl: float = 30.0,
        llm_chunk_delay: float = 0.0,
        extra_llm_upstreams: tuple[str, ...] = (),
        real_gateways: int = 0,
        clock: str = "instant",
        time_scale: float = 1.0,
    ) -> None:
        if not ipaddress.IPv4Address(host).is_loopback:
            raise ValueError("the sandbox binds to loopback (127.0.0.0/8) only")
        self.state_path = pathlib.Path(state_path)
        self.boot_delay = boot_delay
        self.gateway_port = gateway_port
        self.ssh_port = ssh_port  # each fake server's SSH server, on its own address
        self.device_wait = device_wait  # how long a first boot waits for its volume's device
        self.action_delay = action_delay
        # Every delay of the fake cloud; `boot_delay` and `action_delay` are the instant profile's.
        self.clock = make_clock(clock, time_scale, boot=boot_delay, action=action_delay)
        self.host = host
        self.port_base = port_base
        self.zone_name = zone_name.lower().rstrip(".")
        network = ipaddress.IPv4Network(server_network)
        if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError("fake servers live on loopback: server_network must be inside 127.0.0.0/8")
        self.server_network = server_network
        self.hcloud_rate_limit = hcloud_rate_limit
        self.server_limit = server_limit
        self.x_code_ttl = x_code_ttl
        self.llm_chunk_delay = llm_chunk_delay
        self.real_gateways = real_gateways  # how many servers may run the real OpenClaw gateway
        self._extra_llm_names = list(extra_llm_upstreams)

        self.store = StateStore(self.state_path)
        self.store.load()
        self.faults = FaultInjector(seed)
        self.journal = RequestJournal()
        self.drift = Drift(self)
        self.x = XUsers(self)
        self.llm_upstreams: dict[str, LLMUpstream] = {}
        self.urls: dict[str, str] = {}
        self.s3: S3Server | None = None  # customer backups' object storage (moto)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._gateways: GatewayFleet
        self._hetzner: HetznerCloud
        self._cloudflare: Cloudflare
        self._x: XOAuth

    # -- credentials (kept in the state so a restart hands out the same ones) --------------
    def _secret(self, name: str, make: Callable[[], str]) -> str:
        secrets_section = self.store.section("secrets")
        if name not in secrets_section:
            secrets_section[name] = make()
            self.store.mark_dirty()
        return secrets_section[name]

    @property
    def hcloud_token(self) -> str:
        return self._secret("hcloud_token", lambda: secrets.token_hex(32))

    @property
    def cloudflare_token(self) -> str:
        return self._secret("cloudflare_token", lambda: secrets.token_urlsafe(30))

    @property
    def x_client_id(self) -> str:
        return self._secret("x_client_id", lambda: secrets.token_urlsafe(25)[:34])

    @property
    def x_client_secret(self) -> str:
        return self._secret("x_client_secret", lambda: secrets.token_urlsafe(38))

    @property
    def llm_key(self) -> str:
        return self._llm_key(PRIMARY_LLM)

    def _llm_key(self, name: str) -> str:
        return self._secret(f"llm_key:{name}", lambda: "sk-sandbox-" + secrets.token_hex(20))

    # -- addresses ------------------------------------------------------------------------
    @property
    def hcloud_url(self) -> str:
        return self.urls["hetzner"] + "/v1"

    @property
    def cloudflare_url(self) -> str:
        return self.urls["cloudflare"] + "/client/v4"

    @property
    def x_url(self) -> str:
        return self.urls["x"]

    @property
    def llm_url(self) -> str:
        return self.urls[PRIMARY_LLM] + "/v1"

    @property
    def control_url(self) -> str:
        return self.urls["control"]

    @property
    def zone_id(self) -> str:
        return self._cloudflare.zone_id

    @property
    def llm(self) -> LLMUpstream:
        return self.llm_upstreams[PRIMARY_LLM]

    def describe(self) -> dict[str, Any]:
        return {
            "hcloud_url": self.hcloud_url,
            "hcloud_token": self.hcloud_token,
            "hcloud_poll_interval": self.clock.poll_interval(),
            "cloudflare_url": self.cloudflare_url,
            "cloudflare_token": self.cloudflare_token,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "x_url": self.x_url,
            "x_authorize_url": self.x_url + "/i/oauth2/authorize",
            "x_token_url": self.x_url + "/2/oauth2/token",
            "x_users_me_url": self.x_url + "/2/users/me",
            "x_client_id": self.x_client_id,
            "x_client_secret": self.x_client_secret,
            "llm_url": self.llm_url,
            "llm_key": self.llm_key,
            "llm_upstreams": {
                name: {"url": self.urls[name] + "/v1", "key": upstream.key}
                for name, upstream in self.llm_upstreams.items()
            },
            "control_url": self.control_url,
            "gateway_port": self.gateway_port,
            "ssh_port": self.ssh_port,
            "server_network": self.server_network,
            "s3": self.s3.describe() if self.s3 else None,
            "state_path": str(self.state_path),
            "pid": os.getpid(),
        }

    def provider_env(self) -> dict[str, str]:
        """Environment that points the control plane, the Pulumi providers and both SDKs at the
        sandbox. HCLOUD_POLL_INTERVAL is the control plane's setting (it writes it to each stack
        as hcloud:pollInterval, which the providers read): as often as this sandbox's clock warrants
        (Clock.poll_interval)."""
        return {
            "HCLOUD_TOKEN": self.hcloud_token,
            "HCLOUD_ENDPOINT": self.hcloud_url,
            "HCLOUD_POLL_INTERVAL": self.clock.poll_interval(),
            "CLOUDFLARE_API_TOKEN": self.cloudflare_token,
            "CLOUDFLARE_BASE_URL": self.cloudflare_url,
        }

    def write_env_file(self, path: pathlib.Path | str) -> pathlib.Path:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        return path

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Sandbox:
        if self._thread is not None:
            raise RuntimeError("sandbox already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="clawdet-sandbox", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._startup(), self._loop).result(timeout=60)
            s3_credentials = self._secret("s3_credentials", lambda: "/".join(new_credentials())).split("/", 1)
            s3_port = self.port_base + S3_PORT_OFFSET if self.port_base else 0
            self.s3 = S3Server(self.host, s3_port, (s3_credentials[0], s3_credentials[1])).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=60)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self._loop = None
        self._thread = None
        self._runners.clear()

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs ``function`` (sync or async) on the sandbox loop and returns its result."""
        if self._loop is None:
            raise RuntimeError("sandbox is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("Sandbox.call from the sandbox loop would deadlock")

        async def run() -> Any:
            result = function(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=60)

    async def _startup(self) -> None:
        install = openclaw.find() if self.real_gateways else None
        if self.real_gateways and install is None:
            log.warning(
                "OpenClaw is not installed (python -m sandbox.openclaw ensure); every fake server "
                "gets the stand-in gateway"
            )
        self._gateways = GatewayFleet(
            self.gateway_port,
            self.faults,
            self.journal,
            servers_dir=self.state_path.parent / "servers",
            real_gateways=self.real_gateways,
            install=install,
        )
        atexit.register(self._gateways.kill_real_now)
        counters = self.store.section("counters")
        allocator = AddressAllocator(
            self.server_network,
            (self.gateway_port, self.ssh_port),
            read_counter=lambda: counters.get("address", 0),
            write_counter=lambda value: counters.__setitem__("address", value),
        )
        self._hetzner = HetznerCloud(
            self.store,
            self._gateways,
            allocator,
            self.faults,
            self.journal,
            token=self.hcloud_token,
            clock=self.clock,
            rate_limit=self.hcloud_rate_limit,
            server_limit=self.server_limit,
            ssh_port=self.ssh_port,
            device_wait=self.device_wait,
        )
        self._cloudflare = Cloudflare(
            self.store,
            self.faults,
            self.journal,
            token=self.cloudflare_token,
            zone_name=self.zone_name,
            clock=self.clock,
        )
        self._x = XOAuth(
            self.store,
            self.faults,
            self.journal,
            client_id=self.x_client_id,
            client_secret=self.x_client_secret,
            code_ttl=self.x_code_ttl,
        )
        self.llm_upstreams = {}
        apps = [
            ("hetzner", self._hetzner.build_app()),
            ("cloudflare", self._cloudflare.build_app()),
            ("x", self._x.build_app()),
        ]
        for index, (name, app) in enumerate(apps):
            await self._serve(name, app, index)
        await self._start_llm(PRIMARY_LLM)
        await self._serve("control", build_control_app(self), _SERVICE_ORDER.index("control"))
        for name in self._extra_llm_names:
            await self._start_llm(name)
        self._x.base_url = self.urls["x"]
        self._hetzner.restore()
        self.store.start_flusher()

    async def _serve(self, name: str, app: web.Application, offset: int) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        port = self.port_base + offset if self.port_base else 0
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        bound_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.urls[name] = f"http://{self.host}:{bound_port}"

    async def _start_llm(self, name: str) -> LLMUpstream:
        upstream = LLMUpstream(
            name, self._llm_key(name), self.faults, self.journal, chunk_delay=self.llm_chunk_delay
        )
        self.llm_upstreams[name] = upstream
        offset = (
            _SERVICE_ORDER.index(PRIMARY_LLM)
            if name == PRIMARY_LLM
            else len(_SERVICE_ORDER) + len(self.llm_upstreams) - 2
        )
        await self._serve(name, upstream.build_app(), offset)
        return upstream

    def add_llm_upstream(self, name: str) -> LLMUpstream:
        """Another OpenAI-compatible upstream (own URL and key), e.g. for fallback tests."""
        if name in self.llm_upstreams or name in _SERVICE_ORDER or name.startswith("gateway"):
            raise ValueError(f"name {name!r} is taken")
        if self._loop is None:
            raise RuntimeError("start the sandbox first, or pass extra_llm_upstreams=(...)")
        self._extra_llm_names.append(name)
        return self.call(self._start_llm, name)

    def llm_url_of(self, name: str) -> str:
        return self.urls[name] + "/v1"

    async def _shutdown(self) -> None:
        if hasattr(self, "_hetzner"):
            self._hetzner.shutdown()
            await self._hetzner.machines.stop_all()
        if hasattr(self, "_gateways"):
            await self._gateways.stop_all()
        for runner in reversed(self._runners):
            await runner.cleanup()
        await self.store.stop_flusher()

    # -- inspection -----------------------------------------------------------------------
    def _inventory(self) -> dict[str, Any]:
        return {
            **self._hetzner.inventory(),
            **self._cloudflare.inventory(),
            "x": self._x.inventory(),
            "gateways_up": self._gateways.up_count(),
            "faults": self.faults.rules(),
        }

    def inventory(self) -> dict[str, Any]:
        """Everything the fake clouds hold: servers (with gateway state), firewalls, records."""
        return self.call(self._inventory)

    def gateway_state(self, server_id: int) -> str:
        """``up``, ``booting``, ``down`` or ``failed``."""
        return self.call(self._hetzner.machines.gateway_state, server_id)

    def wait_for_gateway(self, server_id: int, state: str = "up", timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.gateway_state(server_id) != state:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"gateway of server {server_id} is {self.gateway_state(server_id)}, not {state}"
                )
            time.sleep(0.02)

    def ssh_state(self, server_id: int) -> dict[str, Any]:
        """The server's boot (``booting``, ``running``, ``done``, ``error``, ``off``) and its SSH
        server: ``port``, ``state`` (``listening``, ``down``, ``failed``) and ``host_key``."""
        return self.call(self._hetzner.machines.describe, server_id)

    def ssh_host_key(self, server_id: int) -> str | None:
        """The server's SSH host key (``ssh-ed25519 AAAA...``) once it has booted, to pin it."""
        return self.ssh_state(server_id)["ssh"]["host_key"]

    def wait_for_ssh(self, server_id: int, timeout: float = 10.0) -> str:
        """Waits until the server's SSH server listens; returns its host key."""
        deadline = time.monotonic() + timeout
        while (state := self.ssh_state(server_id))["ssh"]["state"] != "listening":
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"ssh of server {server_id} is {state['ssh']['state']} (boot {state['boot']})"
                )
            time.sleep(0.02)
        return state["ssh"]["host_key"]

    def requests(self, service: str | None = None) -> list[JournalEntry]:
        """Requests the services answered (``hetzner``, ``cloudflare``, ``x``, ``llm``, ``gateway:<id>``)."""
        return self.journal.entries(service)
