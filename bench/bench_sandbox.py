"""How the sandbox holds a fleet: N servers, each with its gateway, in one sandbox process.

    .venv/bin/python bench/bench_sandbox.py [--servers 1000]

Starts `python -m sandbox` as its own process, creates the servers through the official
`hcloud` SDK, waits for every gateway, probes all of them concurrently, lists the fleet by
label and deletes it; prints timings, the sandbox process's memory and open file descriptors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import httpx
from hcloud import Client
from hcloud.images import Image
from hcloud.server_types import ServerType

ROOT = pathlib.Path(__file__).resolve().parents[1]


def process_figures(pid: int) -> tuple[float, int]:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def cloud_config(token: str) -> str:
    return (
        "#cloud-config\nwrite_files:\n  - path: /opt/openclaw/gateway.env\n    content: |\n"
        f"      OPENCLAW_GATEWAY_TOKEN={token}\n"
    )


async def probe(addresses: list[tuple[str, str]], port: int) -> tuple[int, float]:
    # Every gateway is its own origin: no keep-alive pool, at most 200 requests in flight.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    in_flight = asyncio.Semaphore(200)
    async with httpx.AsyncClient(timeout=10, limits=limits) as http:

        async def one(ip: str, token: str) -> int:
            async with in_flight:
                response = await http.get(
                    f"http://{ip}:{port}/api/status", headers={"Authorization": f"Bearer {token}"}
                )
                return response.status_code

        started = time.perf_counter()
        statuses = await asyncio.gather(*(one(ip, token) for ip, token in addresses))
        return statuses.count(200), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--servers", type=int, default=1000)
    args = parser.parse_args()
    state_dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    state = state_dir / "state.json"
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--state",
            str(state),
            "--boot-delay",
            "0.2",
            "--action-delay",
            "0.05",
            "--server-network",
            "127.210.0.0/16",
            "--hcloud-rate-limit",
            "100000",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    try:
        description_path = state.with_name("sandbox.json")
        while not description_path.exists():
            if sandbox.poll() is not None:
                raise SystemExit("sandbox did not start")
            time.sleep(0.05)
        description = json.loads(description_path.read_text())
        rss_idle, fds_idle = process_figures(sandbox.pid)
        client = Client(
            token=description["hcloud_token"], api_endpoint=description["hcloud_url"], poll_interval=0.2
        )

        started = time.perf_counter()
        for index in range(args.servers):
            client.servers.create(
                name=f"bench-{index}",
                server_type=ServerType(name="cx22"),
                image=Image(name="ubuntu-24.04"),
                labels={"bench": "yes"},
                user_data=cloud_config(f"token-{index}"),
            )
        created = time.perf_counter() - started

        control = description["control_url"]
        while httpx.get(control + "/inventory", timeout=30).json()["gateways_up"] < args.servers:
            time.sleep(0.1)
        all_up = time.perf_counter() - started

        listed_at = time.perf_counter()
        servers = client.servers.get_all(label_selector="bench=yes")
        listed = time.perf_counter() - listed_at
        addresses = [(s.public_net.ipv4.ip, f"token-{s.name.split('-')[1]}") for s in servers]
        answered, probe_seconds = asyncio.run(probe(addresses, description["gateway_port"]))
        rss_full, fds_full = process_figures(sandbox.pid)

        deleted_at = time.perf_counter()
        for server in servers:
            client.servers.delete(server)
        deleted = time.perf_counter() - deleted_at
        time.sleep(0.5)
        rss_after, fds_after = process_figures(sandbox.pid)

        print(f"servers                      {args.servers}")
        print(
            f"create (SDK, sequential)     {created:.2f} s  ({created / args.servers * 1000:.1f} ms/server)"
        )
        print(f"all gateways listening after {all_up:.2f} s")
        print(f"list by label ({len(servers)} servers, {-(-len(servers) // 50)} pages) {listed:.2f} s")
        print(
            f"probe every gateway (concurrent /api/status) {answered}/{len(addresses)} OK "
            f"in {probe_seconds:.2f} s"
        )
        print(f"delete all                   {deleted:.2f} s")
        print(
            f"sandbox RSS idle / full / after delete   {rss_idle:.0f} / {rss_full:.0f} / {rss_after:.0f} MiB"
        )
        print(f"sandbox open fds idle / full / after     {fds_idle} / {fds_full} / {fds_after}")
        print(f"memory per server+gateway    {(rss_full - rss_idle) * 1024 / args.servers:.0f} KiB")
        return 0 if answered == args.servers else 1
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
