"""LLM proxy overhead: streamed chat completions through `clawdet web` (waitress) against the
same sandbox upstream called directly, with 1 and 200 concurrent streams.

Prints p50/p99 of the whole-stream latency and of the time to the first byte, the added
milliseconds and the ratios. Target: at most 3 ms added at p50. Not a test.

    .venv/bin/python bench/bench_llm_proxy.py [--requests 300] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clawdet.instances import credentials
from clawdet.instances import requests as instances
from db.engine import Database
from db.models import PaymentMethod, User, utcnow
from sandbox import Sandbox

SECRET = "bench-secret"
BODY = {
    "model": "sandbox-small",
    "stream": True,
    "messages": [{"role": "user", "content": "a short benchmark prompt of eight words"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(data: Path, box: Sandbox, threads: int) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    url = f"sqlite:///{data / 'clawdet.db'}"
    env = {
        **os.environ,
        "CLAWDET_DATA_DIR": str(data),
        "DATABASE_URL": url,
        "SECRET_KEY": SECRET,
        "LLM_PRIMARY_URL": box.llm_url,
        "LLM_PRIMARY_KEY": box.llm_key,
        "LLM_RATE_LIMIT": "1000000 per minute",
    }
    command = [sys.executable, "-m", "clawdet.cli"]
    subprocess.run([*command, "db", "upgrade"], env=env, cwd=REPO, check=True, capture_output=True)
    process = subprocess.Popen(
        [*command, "web", "--port", str(port), "--threads", str(threads)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            httpx.get(base + "/api/auth/csrf", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    return process, base, url


def instance_key(database_url: str) -> str:
    database = Database(database_url)
    with database.session() as s:
        user = User(
            email="bench@example.com",
            name="Bench",
            terms_accepted_at=utcnow(),
            paid=True,
            payment_method=PaymentMethod.STRIPE.value,
        )
        s.add(user)
        s.flush()
        instance = instances.request_instance(s, user, secret=SECRET)
        s.flush()
        key = credentials.llm_key(SECRET, instance.id, instance.llm_key_version)
    database.dispose()
    return key


async def one_stream(client: httpx.AsyncClient, url: str, key: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=BODY, headers={"Authorization": f"Bearer {key}"}) as response:
        response.raise_for_status()
        async for _ in response.aiter_raw():
            if first is None:
                first = time.perf_counter() - started
    return time.perf_counter() - started, first or 0.0


async def run(url: str, key: str, total: int, concurrency: int) -> tuple[list[float], list[float]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[tuple[float, float]] = []
    queue = iter(range(total))
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for _ in range(min(concurrency, 20)):  # warm up connections and caches
            await one_stream(client, url, key)

        async def worker():
            for _ in queue:
                results.append(await one_stream(client, url, key))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [r[0] * 1000 for r in results], [r[1] * 1000 for r in results]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--threads", type=int, default=256, help="waitress threads (one per open stream)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(Path(tmp) / "sandbox.json").start()
        process, base, database_url = start_web(Path(tmp) / "data", box, args.threads)
        try:
            key = instance_key(database_url)
            print(f"streamed chat completions, {args.requests} per run; waitress threads={args.threads}")
            print(
                f"{'concurrency':>11} {'path':>7} {'p50 ms':>8} {'p99 ms':>8} {'ttfb p50':>9} {'ttfb p99':>9}"
            )
            for concurrency in (1, args.concurrency):
                direct, direct_first = asyncio.run(
                    run(box.llm_url + "/chat/completions", box.llm_key, args.requests, concurrency)
                )
                proxied, proxied_first = asyncio.run(
                    run(base + "/llm/v1/chat/completions", key, args.requests, concurrency)
                )
                for name, whole, first in (
                    ("direct", direct, direct_first),
                    ("proxy", proxied, proxied_first),
                ):
                    print(
                        f"{concurrency:>11} {name:>7} {pct(whole, 50):8.2f} {pct(whole, 99):8.2f} "
                        f"{pct(first, 50):9.2f} {pct(first, 99):9.2f}"
                    )
                added = pct(proxied, 50) - pct(direct, 50)
                print(
                    f"{'':>11} added p50 {added:+.2f} ms (ratio {pct(proxied, 50) / pct(direct, 50):.2f}x), "
                    f"p99 {pct(proxied, 99) - pct(direct, 99):+.2f} ms "
                    f"(ratio {pct(proxied, 99) / pct(direct, 99):.2f}x); "
                    f"mean {statistics.mean(proxied):.2f} ms"
                )
        finally:
            process.terminate()
            process.wait(timeout=10)
            box.stop()


if __name__ == "__main__":
    main()
