"""``python -m sandbox`` (wired as ``clawdet sandbox``): run every fake service until a signal."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import threading

from .clock import PROFILES
from .runtime import Sandbox

DEFAULT_STATE = pathlib.Path(os.environ.get("CLAWDET_DATA_DIR", "data")) / "sandbox" / "state.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clawdet sandbox", description=__doc__)
    parser.add_argument(
        "--state",
        type=pathlib.Path,
        default=DEFAULT_STATE,
        help=f"state file (default: {DEFAULT_STATE}); sandbox.json is written beside it",
    )
    parser.add_argument(
        "--clock",
        choices=PROFILES,
        default="instant",
        help="how long each step takes: instant (only --boot-delay and --action-delay) or hetzner "
        "(server create, boot, cloud-init's installs, image pulls, cold start, DNS as on Hetzner)",
    )
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="run the clock this many times faster (e.g. 20)"
    )
    parser.add_argument(
        "--boot-delay", type=float, default=1.0, help="instant clock: seconds from power-on to SSH up"
    )
    parser.add_argument(
        "--action-delay", type=float, default=0.2, help="instant clock: seconds an action stays running"
    )
    parser.add_argument("--gateway-port", type=int, default=18789)
    parser.add_argument("--ssh-port", type=int, default=2222, help="each fake server's SSH port")
    parser.add_argument(
        "--device-wait",
        type=float,
        default=600.0,
        help="seconds a first boot waits for the volume its cloud-config mounts",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=0,
        help="fixed ports: hetzner=BASE, cloudflare=BASE+1, x=BASE+2, llm=BASE+3, "
        "control=BASE+4 (default: ephemeral)",
    )
    parser.add_argument("--zone", default="clawdet.test", help="Cloudflare zone (base domain)")
    parser.add_argument("--server-network", default="127.10.0.0/16", help="loopback block for fake servers")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault injector")
    parser.add_argument(
        "--hcloud-rate-limit",
        type=int,
        default=3600,
        help="Hetzner API bucket size (refills one request per second)",
    )
    parser.add_argument(
        "--llm-upstream",
        action="append",
        default=[],
        metavar="NAME",
        help="start another LLM upstream (repeatable)",
    )
    parser.add_argument(
        "--real-gateways",
        type=int,
        default=2,
        help="servers that run the real OpenClaw gateway (~1 GB each); the rest get the stand-in",
    )
    parser.add_argument(
        "--env-file",
        type=pathlib.Path,
        default=None,
        help="where to write the JSON description (default: sandbox.json beside the state)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(levelname)s %(message)s")
    sandbox = Sandbox(
        args.state,
        boot_delay=args.boot_delay,
        clock=args.clock,
        time_scale=args.time_scale,
        real_gateways=args.real_gateways,
        action_delay=args.action_delay,
        gateway_port=args.gateway_port,
        ssh_port=args.ssh_port,
        device_wait=args.device_wait,
        port_base=args.port_base,
        zone_name=args.zone,
        server_network=args.server_network,
        seed=args.seed,
        extra_llm_upstreams=tuple(args.llm_upstream),
        hcloud_rate_limit=args.hcloud_rate_limit,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox.start()
    env_file = args.env_file or args.state.with_name("sandbox.json")
    try:
        sandbox.write_env_file(env_file)
        description = sandbox.describe()
        print("Clawdet sandbox is up")
        for key in (
            "hcloud_url",
            "cloudflare_url",
            "zone_name",
            "zone_id",
            "x_url",
            "llm_url",
            "control_url",
        ):
            print(f"  {key:<15} {description[key]}")
        print(f"  {'gateways':<15} <server ipv4>:{args.gateway_port} in {args.server_network}")
        print(f"  {'ssh':<15} root@<server ipv4> -p {args.ssh_port}")
        print(f"  {'s3':<15} {description['s3']['endpoint']}/{description['s3']['bucket']}")
        print(f"  {'credentials':<15} {env_file}")
        print(f"  {'clock':<15} {args.clock}, {args.time_scale:g}x")
        print(f"  {'state':<15} {args.state}", flush=True)
        stop.wait()
    finally:
        sandbox.stop()
        print("Clawdet sandbox stopped; state saved", flush=True)
    return 0
