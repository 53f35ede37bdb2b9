"""The real OpenClaw gateway's start time and memory, the figures the tier limits come from.

    .venv/bin/python bench/bench_openclaw_memory.py [CHATS]

One fake server runs the real gateway from exactly the user_data the program renders (its model
provider pointed at the sandbox's LLM upstream). Prints the seconds to /healthz, the seconds of
the first chat, and the resident memory of the gateway's process tree (summed VmRSS) idle and
after CHATS chats (default 12), as a share of each tier's container memory limit.
Target: the limit leaves >= 30 % headroom over the RSS after chats.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hcloud
import httpx
from hcloud.images.domain import Image
from hcloud.server_types.domain import ServerType

from programs import cloud_init, openclaw, tiers
from sandbox import Sandbox
from sandbox import openclaw as openclaw_install

TOKEN = "bench" + "0" * 40


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo += children.get(current, [])
    return total / 1024


def main() -> int:
    chats = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    openclaw_install.ensure()
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(Path(tmp) / "state.json", boot_delay=0, real_gateways=1, server_network="127.30.0.0/16")
        with box:
            user_data = cloud_init.render_user_data(
                tier="free",
                fqdn="bench.clawdet.test",
                openclaw_image=openclaw.OPENCLAW_IMAGE,
                model="sandbox-small",
                llm_base_url=box.llm_url,
                gateway_token=TOKEN,
                llm_api_key=box.llm_key,
            )
            client = hcloud.Client(token=box.hcloud_token, api_endpoint=box.hcloud_url, poll_interval=0.05)
            started = time.monotonic()
            created = client.servers.create(
                name="bench",
                server_type=ServerType(name="cx23"),
                image=Image(name="ubuntu-24.04"),
                user_data=user_data,
            )
            base = f"http://{created.server.public_net.ipv4.ip}:{openclaw.GATEWAY_PORT}"
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > 180:
                    print("the gateway did not answer /healthz within 180 s")
                    return 1
                time.sleep(0.25)
            healthy = time.monotonic() - started
            pid = box.inventory()["servers"][0]["gateway"]["pid"]
            time.sleep(5)
            idle = tree_rss_mb(pid)
            seconds = []
            for n in range(chats):
                began = time.monotonic()
                answer = httpx.post(
                    base + "/v1/chat/completions",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    json={"model": "openclaw", "messages": [{"role": "user", "content": f"chat number {n}"}]},
                    timeout=180,
                )
                answer.raise_for_status()
                seconds.append(time.monotonic() - began)
            busy = tree_rss_mb(pid)
    later = sum(seconds[1:]) / max(1, len(seconds) - 1)
    print(
        f"openclaw {openclaw.OPENCLAW_VERSION}: /healthz after {healthy:.1f} s; "
        f"first chat {seconds[0]:.1f} s, later chats {later:.1f} s on average"
    )
    print(f"RSS of the gateway's processes: idle {idle:.0f} MiB, after {chats} chats {busy:.0f} MiB")
    for tier in tiers.TIERS.values():
        limit = tier.gateway.memory_mb
        print(
            f"  {tier.name:<10} limit {limit} MiB: idle {idle / limit:.0%}, after chats {busy / limit:.0%} "
            f"of the limit, headroom {1 - busy / limit:.0%} (target >= 30 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
