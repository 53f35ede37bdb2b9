"""LLM proxy overhead and capacity: streamed chat completions through one `clawdet proxy`
process (Starlette on uvicorn) against the same sandbox LLM upstream called directly.

    .venv/bin/python bench/bench_llm_proxy.py [--requests 300] [--streams 1000] [--seconds 10]

Everything listens on 127.0.0.1 and runs in its own process: the sandbox (`python -m sandbox`,
whose fake LLM upstream answers), one `clawdet proxy`, one `clawdet web` (only polled for
/api/health), a health poller (this script with --poll-health) and this process, the load
generator. SQLite in a temporary directory; N paid owners with an instance each share the load,
so neither the monthly quota nor the per-instance cap (LLM_MAX_CONCURRENT) refuses a request.

1. One stream at a time (upstream chunk delay 0), direct and proxied in turn after a warm-up:
   p50/p99 of the time to the first body bytes (TTFB) and of the whole stream.
   Target: the proxy adds at most 1 ms to the whole stream at p50.
2. --streams concurrent streams of ~--seconds each (the upstream's chunk delay is set through the
   sandbox's control API; the prompt's length sets the word count), their starts spread over
   --ramp seconds so that for the rest of the run all of them are open at once. The same load
   runs directly against the upstream first, then through the proxy. A stream counts as completed
   when it answered 200 and ended with [DONE]. Targets: added TTFB p50 ≤ 2 ms, p99 ≤ 20 ms.
3. During the proxied run, GET /api/health on the web process every 100 ms from the poller's
   own process (the web app reads the sandbox's description, so its cloud checks answer).
   Target: p99 ≤ 100 ms.
4. The proxy's VmRSS before the proxied run and with all streams open. Target: ≤ 64 KiB a stream.

The load generator is aiohttp on one event loop: httpx's AsyncClient was the bottleneck (with
200 streams open it spent ~7 ms of CPU a 36-chunk stream, aiohttp ~0.7 ms). The client's own
event-loop lag and the CPU seconds of client, upstream and proxy are printed with each run.

What would stall the direct and the proxied path alike is kept out of part 2, so that the
difference is the proxy's: the load generator runs its streams with its garbage collector off;
the sandbox upstream (a stand-in for the LLM provider) runs with its garbage collector off
(--upstream-gc keeps it on: then its own full collections, ~100 ms with 1000 streams open, make
the direct run's TTFB p99 ~100 ms and the added p99 a difference of two noise figures); and with
--pin (the default, 2+ CPUs) the proxy has the last CPU to itself while the client and the
upstream share the others, in both runs (--no-pin: everything shares every CPU, and in the
proxied run three busy processes queue for two cores). The proxy itself runs as in production.
The machine is shared and noisy: quote ratios, run it twice before believing one figure.
Warnings and errors from the processes' logs are printed at the end.
Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ctypes
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECRET = "bench-secret"
ROOT = "bench-credentials-root"
MAX_TOKENS = 64
SHORT_PROMPT = "a short benchmark prompt of eight words"  # a 12-word answer
REPLY_PREFIX_WORDS = 4  # "Sandbox reply <digest> to:" before the echoed prompt
PR_SET_PDEATHSIG = 1


# -- processes ------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """A child gets SIGTERM should this process die without stopping it (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup(cpus: set[int] | None):
    def setup() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)  # before exec: every thread it makes inherits it

    return setup


def cpu_plan(pin: bool) -> dict[str, set[int]]:
    """With --pin (and 2+ CPUs): the proxy alone on the last CPU, the load generator and the
    upstream on the others, in both runs; the web app and the health poller anywhere. So the
    direct and the proxied run give the client and the upstream the same CPUs, and what the proxy
    adds is its own path, not the load generator and the upstream waiting for a CPU the proxy
    took (on 2 cores, three busy processes queue for them)."""
    every = set(os.sched_getaffinity(0))
    if not pin or len(every) < 2:
        return {"proxy": every, "sandbox": every, "client": every, "other": every}
    proxy = {max(every)}
    return {"proxy": proxy, "sandbox": every - proxy, "client": every - proxy, "other": every}


class Processes:
    """The child processes, each logging to <logs>/<name>.log, stopped however main() ends."""

    def __init__(self, logs: Path, cpus: dict[str, set[int]]):
        self.logs, self.cpus = logs, cpus
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict, pipes: bool = False) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                args,
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log,
                preexec_fn=_child_setup(self.cpus.get(name, self.cpus["other"])),
            )
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.running):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def wait_http(url: str, process: subprocess.Popen, name: str, timeout: float = 60) -> None:
    """Until `url` answers anything at all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {name}.log")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout:.0f} s")


UPSTREAM_WITHOUT_GC = "import gc, runpy, sys; gc.disable(); runpy.run_module('sandbox', run_name='__main__')"


def start_sandbox(processes: Processes, data: Path, upstream_gc: bool) -> dict:
    """The sandbox writes its description (URLs, keys) beside its state: data/sandbox/sandbox.json,
    which is also where `clawdet web` looks for the sandbox cloud."""
    state = data / "sandbox" / "state.json"
    argv = ["--state", str(state), "--real-gateways", "0", "--boot-delay", "0"]
    # The upstream stands in for the LLM provider; its own garbage-collection pauses (~100 ms with
    # 1000 streams open) would stall the direct and the proxied run alike, as a tail both share.
    command = python("-m", "sandbox", *argv) if upstream_gc else python("-c", UPSTREAM_WITHOUT_GC, *argv)
    process = processes.start("sandbox", command, {**os.environ, "PYTHONPATH": str(REPO)})
    description = state.with_name("sandbox.json")
    deadline = time.monotonic() + 60
    while not description.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the sandbox did not start; see sandbox.log")
        time.sleep(0.05)
    return json.loads(description.read_text())


def control_plane_env(data: Path, sandbox: dict, max_concurrent: int) -> dict[str, str]:
    return {
        **os.environ,
        "CLAWDET_DATA_DIR": str(data),
        "CLAWDET_SANDBOX": "true",
        "DATABASE_URL": f"sqlite:///{data / 'clawdet.db'}",
        "SECRET_KEY": SECRET,
        "LLM_PRIMARY_URL": sandbox["llm_url"],
        "LLM_PRIMARY_KEY": sandbox["llm_key"],
        "LLM_RATE_LIMIT": "1000000 per minute",
        "LLM_MAX_CONCURRENT": str(max_concurrent),
        "LLM_DEFAULT_MAX_TOKENS": str(MAX_TOKENS),
    }


def start_server(
    processes: Processes, name: str, env: dict, port: int, ready_path: str
) -> tuple[str, subprocess.Popen]:
    """`clawdet proxy` or `clawdet web` on `port`; its base URL once it answers."""
    process = processes.start(name, python("-m", "clawdet.cli", name, "--port", str(port)), env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + ready_path, process, name)
    return base, process


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instance_keys(database_url: str, count: int) -> list[str]:
    """`count` paid owners with an instance each (one instance per owner): their LLM keys."""
    from clawdet.instances import credentials
    from clawdet.instances import requests as instances
    from db.engine import Database
    from db.models import PaymentMethod, User, utcnow

    database = Database(database_url)
    roots = credentials.Roots(gateway_tokens=ROOT, credentials=ROOT)  # the workers' (not the proxy's)
    keys = []
    with database.session() as s:
        for index in range(count):
            user = User(
                email=f"bench{index}@example.com",
                name=f"Bench {index}",
                terms_accepted_at=utcnow(),
                paid=True,
                payment_method=PaymentMethod.STRIPE.value,
            )
            s.add(user)
            s.flush()
            instance = instances.request_instance(s, user)
            s.flush()
            keys.append(credentials.issue_llm_key(instance, roots))  # as a worker does
    database.dispose()
    return keys


def set_chunk_delay(sandbox: dict, seconds: float) -> None:
    url = f"{sandbox['control_url']}/llm/llm"  # the primary upstream, "llm"
    httpx.put(url, json={"chunk_delay": seconds}, timeout=10).raise_for_status()


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have been busy (not idle or waiting for I/O)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measured_cpu(pids: dict[str, int], run) -> tuple:
    """What `run()` returns, and the CPU seconds each of `pids` spent meanwhile, and everything
    else on the machine ("others": the web app and poller, and whatever else runs here; on a
    shared machine a run with many seconds there is noise, not a figure)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy = machine_busy_seconds()
    result = run()
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    spent["others"] = max(0.0, machine_busy_seconds() - busy - sum(spent.values()))
    return result, spent


# -- the load generator ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # .../chat/completions
    keys: list[str]


@dataclass
class Stream:
    status: int = 0
    ttfb: float | None = None  # seconds from sending the request to the first body bytes
    total: float | None = None  # ... to the end of a complete stream
    error: str = ""


@dataclass
class Gauge:
    """Streams that received their first bytes and have not ended."""

    open: int = 0
    peak: int = 0

    def up(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def down(self) -> None:
        self.open -= 1


def chat_body(prompt: str) -> bytes:
    # include_usage as the proxy asks it of the upstream anyway: both paths get the same answer.
    return json.dumps(
        {
            "model": "sandbox-small",
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()


def prompt_of(words: int) -> str:
    """A prompt whose answer has `words` words (the upstream echoes the prompt after 4 words)."""
    return " ".join(f"w{index}" for index in range(words - REPLY_PREFIX_WORDS))


async def one_stream(session: aiohttp.ClientSession, url: str, key: str, body: bytes, gauge: Gauge) -> Stream:
    result = Stream()
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    opened = False
    try:
        async with session.post(url, data=body, headers=headers) as response:
            result.status = response.status
            received = b""
            async for chunk in response.content.iter_any():
                if not opened:
                    result.ttfb = time.perf_counter() - started
                    opened = True
                    gauge.up()
                received = (received + chunk)[-4096:]
            if response.status != 200:
                result.error = f"HTTP {response.status}: {received[:300].decode(errors='replace')}"
            elif not received.rstrip().endswith(b"data: [DONE]"):
                result.error = "the stream ended without [DONE]"
            else:
                result.total = time.perf_counter() - started
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if opened:
            gauge.down()
    return result


def client_session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
        auto_decompress=False,
    )


async def sequential(targets: list[Target], body: bytes, count: int, warmup: int) -> dict[str, list[Stream]]:
    """`count` streams one after the other on each target, alternating targets."""
    results: dict[str, list[Stream]] = {target.name: [] for target in targets}
    gauge = Gauge()
    async with client_session(len(targets) * 2) as session:
        for index in range(warmup + count):
            for target in targets:
                key = target.keys[index % len(target.keys)]
                stream = await one_stream(session, target.url, key, body, gauge)
                if index >= warmup:
                    results[target.name].append(stream)
    return results


@dataclass
class Run:
    streams: list[Stream]
    peak_open: int
    seconds: float
    loop_lag_ms: list[float]
    samples: list[tuple[int, int, int]] = field(default_factory=list)  # (open, rss KiB, fds)


async def loop_lag(lags: list[float], period: float = 0.01) -> None:
    """How late this event loop wakes up: a measure of the load generator's own saturation."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(period)
        lags.append((time.perf_counter() - before - period) * 1000)


async def sample_process(pid: int, gauge: Gauge, samples: list, period: float = 0.1) -> None:
    while True:
        samples.append((gauge.open, rss_kib(pid), open_fds(pid)))
        await asyncio.sleep(period)


async def ramped(target: Target, body: bytes, count: int, ramp: float, watch_pid: int | None) -> Run:
    """`count` streams whose starts are spread evenly over `ramp` seconds."""
    gauge, lags, samples = Gauge(), [], []
    background = [asyncio.create_task(loop_lag(lags))]
    if watch_pid:
        background.append(asyncio.create_task(sample_process(watch_pid, gauge, samples)))

    async def start(index: int, session: aiohttp.ClientSession) -> Stream:
        await asyncio.sleep(index * ramp / count)
        return await one_stream(session, target.url, target.keys[index % len(target.keys)], body, gauge)

    started = time.perf_counter()
    gc.collect()
    gc.disable()  # the load generator's own collections would stall its clock, in both runs alike
    try:
        async with client_session(count + 100) as session:
            streams = await asyncio.gather(*(start(index, session) for index in range(count)))
    finally:
        gc.enable()
    seconds = time.perf_counter() - started
    for task in background:
        task.cancel()
    return Run(list(streams), gauge.peak, seconds, lags, samples)


# -- /api/health, polled from its own process -----------------------------------------------


def poll_health(url: str, interval: float) -> None:
    """--poll-health mode: GET `url` every `interval` s until stdin closes, then print
    [[status, ms], ...] as JSON (status 0: no answer)."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    seen = []
    print("polling", flush=True)
    with httpx.Client(timeout=10) as client:
        next_at = time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = client.get(url).status_code
            except httpx.HTTPError:
                status = 0
            seen.append((status, (time.perf_counter() - started) * 1000))
            next_at += interval
            stop.wait(max(0.0, next_at - time.perf_counter()))
    print(json.dumps(seen), flush=True)


class HealthPoller:
    def __init__(self, processes: Processes, url: str, interval: float):
        command = python(__file__, "--poll-health", url, "--health-interval", str(interval))
        self.process = processes.start("health-poller", command, dict(os.environ), pipes=True)
        if self.process.stdout.readline().strip() != b"polling":
            raise RuntimeError("the health poller did not start; see health-poller.log")

    def results(self) -> list[tuple[int, float]]:
        out, _ = self.process.communicate(timeout=30)
        return [tuple(pair) for pair in json.loads(out)]


# -- figures --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(streams: list[Stream], attribute: str) -> list[float]:
    return [getattr(s, attribute) * 1000 for s in streams if getattr(s, attribute) is not None]


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "NOT met"


def failures(streams: list[Stream]) -> list[Stream]:
    return [s for s in streams if s.total is None]


def print_failures(name: str, streams: list[Stream]) -> None:
    failed = failures(streams)
    if failed:
        counts = collections.Counter(s.error[:160] for s in failed)
        print(f"  {name}: {len(failed)} failed, e.g.:")
        for error, count in counts.most_common(5):
            print(f"    {count:>5} x {error}")


def print_latency_table(rows: dict[str, list[Stream]]) -> None:
    print(f"  {'ms':<8} {'ok':>6} {'ttfb p50':>9} {'ttfb p99':>9} {'whole p50':>10} {'whole p99':>10}")
    for name, streams in rows.items():
        ttfb, whole = ms(streams, "ttfb"), ms(streams, "total")
        print(
            f"  {name:<8} {len(whole):>6} {pct(ttfb, 50):9.2f} {pct(ttfb, 99):9.2f} "
            f"{pct(whole, 50):10.2f} {pct(whole, 99):10.2f}"
        )


def added(direct: list[float], proxied: list[float], q: float) -> tuple[float, float]:
    """Milliseconds the proxy adds at percentile q (a difference of percentiles), and the ratio."""
    return pct(proxied, q) - pct(direct, q), pct(proxied, q) / pct(direct, q)


def log_problems(path: Path, limit: int = 8) -> list[str]:
    """Warnings, errors and stray lines (tracebacks) of a process's log, counted by message."""
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            level = str(record.get("level", "")).lower()
            if level in ("warning", "error", "critical"):
                counts[f"{level}: {record.get('event', '')}"[:200]] += 1
        elif line.strip() and not line.startswith(("Clawdet", "  ")):
            counts[line.strip()[:200]] += 1
    return [f"{count:>6} x {message}" for message, count in counts.most_common(limit)]


# -- the parts ------------------------------------------------------------------------------


def single_stream(args, direct: Target, proxied: Target) -> float:
    print(f"\n1. One stream at a time, chunk delay 0: {args.requests} each after {args.warmup} warm-up")
    results = asyncio.run(sequential([direct, proxied], chat_body(SHORT_PROMPT), args.requests, args.warmup))
    print_latency_table(results)
    for name, streams in results.items():
        print_failures(name, streams)
    direct_whole, proxy_whole = ms(results["direct"], "total"), ms(results["proxy"], "total")
    direct_ttfb, proxy_ttfb = ms(results["direct"], "ttfb"), ms(results["proxy"], "ttfb")
    whole_added, whole_ratio = added(direct_whole, proxy_whole, 50)
    ttfb_added, ttfb_ratio = added(direct_ttfb, proxy_ttfb, 50)
    print(
        f"  added at p50: whole stream {whole_added:+.2f} ms ({whole_ratio:.2f}x), "
        f"ttfb {ttfb_added:+.2f} ms ({ttfb_ratio:.2f}x)"
    )
    return whole_added


def describe_run(name: str, run: Run, cpu: dict[str, float]) -> None:
    ok = len(run.streams) - len(failures(run.streams))
    lag = run.loop_lag_ms
    print(
        f"  {name:<8} completed {ok}/{len(run.streams)}, failed {len(run.streams) - ok}; "
        f"peak open {run.peak_open}; {run.seconds:.1f} s; "
        f"client loop lag p50 {pct(lag, 50):.1f} ms, p99 {pct(lag, 99):.1f} ms, max {max(lag):.0f} ms"
    )
    print("  " + " " * 9 + "CPU s: " + ", ".join(f"{who} {seconds:.1f}" for who, seconds in cpu.items()))


def print_ttfb_by_second(name: str, run: Run, ramp: float) -> None:
    """TTFB p50 of the streams started in each second of the ramp: does a queue build up?"""
    seconds: dict[int, list[float]] = collections.defaultdict(list)
    for index, stream in enumerate(run.streams):
        if stream.ttfb is not None:
            seconds[int(index * ramp / len(run.streams))].append(stream.ttfb * 1000)
    shown = " | ".join(f"{second}s {pct(values, 50):.0f}" for second, values in sorted(seconds.items()))
    print(f"  {name:<8} ttfb p50 (ms) by second of the ramp: {shown}")


def peak_sample(run: Run) -> tuple[int, int, int]:
    """The largest RSS sampled while (nearly) every stream was open."""
    near_peak = [s for s in run.samples if s[0] >= run.peak_open * 0.98] or run.samples
    return max(near_peak, key=lambda sample: sample[1])


def many_streams(args, sandbox: dict, direct: Target, proxied: Target, proxy_pid: int, start_poller) -> dict:
    delay = args.seconds / args.words
    body = chat_body(prompt_of(args.words))
    print(
        f"\n2. {args.streams} concurrent streams of {args.words} words, chunk delay {delay * 1000:.0f} ms "
        f"(~{args.seconds:.0f} s each), starts spread over {args.ramp:.0f} s"
    )
    pids = {"client": os.getpid(), "upstream": sandbox["pid"], "proxy": proxy_pid}
    set_chunk_delay(sandbox, delay)
    direct_run, cpu = measured_cpu(
        pids, lambda: asyncio.run(ramped(direct, body, args.streams, args.ramp, None))
    )
    describe_run("direct", direct_run, cpu)
    time.sleep(2)  # the proxy's recorder settles the first part's usage
    before = rss_kib(proxy_pid), open_fds(proxy_pid)
    poller = start_poller()
    proxy_run, cpu = measured_cpu(
        pids, lambda: asyncio.run(ramped(proxied, body, args.streams, args.ramp, proxy_pid))
    )
    polled = poller.results()
    set_chunk_delay(sandbox, 0)
    describe_run("proxy", proxy_run, cpu)
    figures = ttfb_figures(direct_run, proxy_run)
    print_ttfb_by_second("direct", direct_run, args.ramp)
    print_ttfb_by_second("proxy", proxy_run, args.ramp)
    figures["health99"] = health_figures(polled)
    figures["rss_per_stream"] = rss_figures(before, proxy_run)
    return figures


def ttfb_figures(direct: Run, proxied: Run) -> dict:
    print_latency_table({"direct": direct.streams, "proxy": proxied.streams})
    print_failures("direct", direct.streams)
    print_failures("proxy", proxied.streams)
    direct_ttfb, proxy_ttfb = ms(direct.streams, "ttfb"), ms(proxied.streams, "ttfb")
    figures = {"completed": len(proxied.streams) - len(failures(proxied.streams))}
    for q in (50, 99):
        figures[f"ttfb{q}"], ratio = added(direct_ttfb, proxy_ttfb, q)
        print(f"  added ttfb p{q}: {figures[f'ttfb{q}']:+.2f} ms ({ratio:.2f}x)")
    return figures


def health_figures(polled: list[tuple[int, float]]) -> float:
    latencies = [latency for _, latency in polled]
    statuses = collections.Counter(status for status, _ in polled)
    print(
        f"\n3. GET /api/health during the proxied run: {len(polled)} polls, statuses "
        f"{dict(sorted(statuses.items()))}; p50 {pct(latencies, 50):.1f} ms, "
        f"p99 {pct(latencies, 99):.1f} ms, max {max(latencies, default=float('nan')):.1f} ms"
    )
    return pct(latencies, 99)


def rss_figures(before: tuple[int, int], run: Run) -> float:
    """KiB of the proxy's VmRSS a stream, from before the run to its peak."""
    (base_rss, base_fds), (open_at_peak, peak_rss, peak_fds) = before, peak_sample(run)
    per_stream = (peak_rss - base_rss) / max(1, open_at_peak)
    print(
        f"\n4. proxy VmRSS {base_rss / 1024:.1f} MiB before, {peak_rss / 1024:.1f} MiB with {open_at_peak} "
        f"streams open: {per_stream:.1f} KiB a stream (open fds {base_fds} -> {peak_fds})"
    )
    return per_stream


def print_summary(streams: int, single_added: float, figures: dict) -> None:
    failed = streams - figures["completed"]
    rows = [  # what, measured, target text, value, limit
        ("1 stream: added whole-stream p50", f"{single_added:+.2f} ms", "≤ 1 ms", single_added, 1),
        (f"{streams} streams: completed", f"{figures['completed']}/{streams}", "all", failed, 0),
        (
            f"{streams} streams: added TTFB p50",
            f"{figures['ttfb50']:+.2f} ms",
            "≤ 2 ms",
            figures["ttfb50"],
            2,
        ),
        (
            f"{streams} streams: added TTFB p99",
            f"{figures['ttfb99']:+.2f} ms",
            "≤ 20 ms",
            figures["ttfb99"],
            20,
        ),
        ("/api/health p99 under load", f"{figures['health99']:.1f} ms", "≤ 100 ms", figures["health99"], 100),
        (
            "proxy RSS per open stream",
            f"{figures['rss_per_stream']:.1f} KiB",
            "≤ 64 KiB",
            figures["rss_per_stream"],
            64,
        ),
    ]
    print(f"\n{'target':<40} {'measured':>12} {'target':>10}  verdict")
    for name, measured, target, value, limit in rows:
        print(f"{name:<40} {measured:>12} {target:>10}  {verdict(value, limit)}")


def print_logs(logs: Path) -> None:
    print("\nwarnings and errors in the processes' logs:")
    for path in sorted(logs.glob("*.log")):
        problems = log_problems(path)
        print(f"  {path.stem}: {'none' if not problems else ''}")
        for problem in problems:
            print(f"    {problem}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="sequential streams a path (part 1)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams (part 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long one stream lasts")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which the streams start")
    parser.add_argument("--words", type=int, default=32, help=f"words an answer streams (5..{MAX_TOKENS})")
    parser.add_argument("--instances", type=int, default=50, help="owners with an instance, sharing the load")
    parser.add_argument("--max-concurrent", type=int, default=64, help="LLM_MAX_CONCURRENT")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the proxy on a CPU of its own, the client and upstream on the others (see cpu_plan)",
    )
    parser.add_argument(
        "--upstream-gc",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="leave the sandbox upstream's garbage collector on (by default it is off: see start_sandbox)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    parser.add_argument("--poll-health", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--health-interval", type=float, default=0.1, help="seconds between health polls")
    args = parser.parse_args()
    if not REPLY_PREFIX_WORDS < args.words <= MAX_TOKENS:
        parser.error(f"--words must be in {REPLY_PREFIX_WORDS + 1}..{MAX_TOKENS}")
    return args


def main() -> int:
    args = parse_args()
    if args.poll_health:
        poll_health(args.poll_health, args.health_interval)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the children on the way out
    tmp = Path(tempfile.mkdtemp(prefix="bench-llm-proxy-"))
    data, logs = tmp / "data", tmp / "logs"
    logs.mkdir()
    cpus = cpu_plan(args.pin)
    os.sched_setaffinity(0, cpus["client"])
    processes = Processes(logs, cpus)
    try:
        sandbox = start_sandbox(processes, data, args.upstream_gc)
        env = control_plane_env(data, sandbox, args.max_concurrent)
        upgrade = python("-m", "clawdet.cli", "db", "upgrade")
        subprocess.run(upgrade, env=env, cwd=REPO, check=True, capture_output=True)
        keys = instance_keys(env["DATABASE_URL"], args.instances)
        proxy_base, proxy = start_server(processes, "proxy", env, free_port(), "/llm/v1/models")
        web_base, _ = start_server(processes, "web", env, free_port(), "/api/health")
        proxy_pid = proxy.pid
        print(
            f"proxy {proxy_base} (pid {proxy_pid}), web {web_base}, upstream {sandbox['llm_url']}; "
            f"{args.instances} instances, LLM_MAX_CONCURRENT={args.max_concurrent}, max_tokens {MAX_TOKENS}; "
            f"{os.cpu_count()} CPUs; logs in {logs}"
        )
        print(
            f"CPUs: proxy {sorted(cpus['proxy'])}, client and upstream {sorted(cpus['client'])}"
            + (" (--pin)" if args.pin and cpus["proxy"] != cpus["client"] else " (shared)")
        )
        direct = Target("direct", sandbox["llm_url"] + "/chat/completions", [sandbox["llm_key"]])
        proxied = Target("proxy", proxy_base + "/llm/v1/chat/completions", keys)

        single_added = single_stream(args, direct, proxied)
        start_poller = lambda: HealthPoller(processes, web_base + "/api/health", args.health_interval)
        figures = many_streams(args, sandbox, direct, proxied, proxy_pid, start_poller)
        print_summary(args.streams, single_added, figures)
    finally:
        processes.stop_all()
        print_logs(logs)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
