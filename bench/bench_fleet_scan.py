"""The fleet scan against 1000 instances in the sandbox, beside per-stack `pulumi refresh`.

    .venv/bin/python bench/bench_fleet_scan.py [--instances 1000] [--refresh-sample 3]

Creates N servers (labelled as the program labels them) and their DNS records directly through
the sandbox's APIs (1000 `pulumi up`s would take an hour), plus ready instance rows in SQLite;
times `fleet.scan` (list by label, list the zone, probe every /healthz) and counts its API
calls. Then creates a few real stacks with the engine and times `pulumi refresh` on them, and
prints the ratio of a per-stack refresh of the whole fleet to one scan. Target: scan <= 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clawdet import cloud
from clawdet.instances.lifecycle import InstanceStatus
from clawdet.reconciler import fleet
from clawdet.reconciler.reconciler import Reconciler
from db.engine import Database
from db.models import Instance, User, utcnow
from tests.fixtures.provisioning import FAST, new_instance, zero_delay_control_plane


def seed_fleet(box, database: Database, count: int) -> None:
    hetzner = httpx.Client(
        base_url=box.hcloud_url, headers={"Authorization": f"Bearer {box.hcloud_token}"}, timeout=30
    )
    flare = httpx.Client(
        base_url=box.cloudflare_url, timeout=30, headers={"Authorization": f"Bearer {box.cloudflare_token}"}
    )
    with database.session() as session:
        owner = User(email="fleet@example.com", name="Fleet", terms_accepted_at=utcnow())
        session.add(owner)
        session.flush()
        for n in range(count):
            name = f"fleet{n:04d}"
            body = {
                "name": name,
                "server_type": "cx23",
                "image": "ubuntu-24.04",
                "location": "hel1",
                "labels": {"managed-by": "clawdet", "clawdet-instance": name, "clawdet-user": owner.id},
                "user_data": "#cloud-config\nwrite_files:\n  - path: /opt/openclaw/.env\n    content: |\n"
                f"      OPENCLAW_GATEWAY_TOKEN={'t' * 64}\n",
            }
            server = hetzner.post("servers", json=body).raise_for_status().json()["server"]
            ipv4 = server["public_net"]["ipv4"]["ip"]
            record = (
                flare.post(
                    f"zones/{box.zone_id}/dns_records",
                    json={
                        "type": "A",
                        "name": f"{name}.{box.zone_name}",
                        "content": ipv4,
                        "proxied": True,
                        "ttl": 1,
                    },
                )
                .raise_for_status()
                .json()["result"]
            )
            session.add(
                Instance(
                    user_id=owner.id,
                    stack_name=name,
                    subdomain=name,
                    status=InstanceStatus.READY.value,
                    generation=1,
                    observed_generation=1,
                    server_id=str(server["id"]),
                    ipv4=ipv4,
                    dns_record_id=record["id"],
                    health="healthy",
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--refresh-sample", type=int, default=3)
    args = parser.parse_args()
    with zero_delay_control_plane() as (box, database, settings, _env):
        started = time.perf_counter()
        seed_fleet(box, database, args.instances)
        print(
            f"seeded {args.instances} servers, records and gateways in {time.perf_counter() - started:.1f}s"
        )
        target = cloud.resolve(settings)
        fleet.scan(database, target, mark=False)  # warm-up
        times, calls = [], 0
        for _ in range(3):
            report = fleet.scan(database, target, mark=False)
            times.append(report.seconds)
            calls = report.api_calls
            assert len(report.findings) == args.instances and not report.drifted, report.drifted[:3]
        scan_s = statistics.median(times)
        print(
            f"fleet scan of {args.instances} instances: median {scan_s:.2f}s over 3 runs, "
            f"{calls} API calls, {args.instances} health probes (target <= 5 s)"
        )

        reconciler = Reconciler(settings, database, config=FAST)
        refresh_times = []
        for n in range(args.refresh_sample):
            name = f"sample{n}"
            new_instance(database, settings, name)
            reconciler.drain()
            started = time.perf_counter()
            reconciler.stacks.refresh(name)
            refresh_times.append(time.perf_counter() - started)
        per_stack = statistics.median(refresh_times)
        print(
            f"pulumi refresh of one stack: median {per_stack:.2f}s over {args.refresh_sample} stacks "
            f"(API calls per refresh: a few per resource)"
        )
        print(
            f"per-stack refresh of the whole fleet would take ~{per_stack * args.instances:.0f}s: "
            f"{per_stack * args.instances / scan_s:.0f}x the scan"
        )


if __name__ == "__main__":
    main()
