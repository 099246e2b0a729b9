"""The meter's overhead: direct to the simulator vs bare mitmproxy vs mitmproxy + the bbnet addon.

One run measures the three side by side, interleaved round by round (so a noisy neighbour hurts
all three alike), and prints JSON: per path, the median over rounds of JSON-call p50/p99 latency,
SSE time to first byte and total time, and requests/s with concurrent clients; then the issue's
goals (addon ≤ 0.5 ms and ≤ 10 % over bare at p50; SSE first byte ≤ 1.05× bare; the first chunk
reaches the client before the simulator has finished the stream).

The simulator runs in its own process (``bbnet sim``, a chunk delay gives streams real duration).
"bare" is the same ``meter.proxy.run_proxy`` (same mitmproxy, same options) with only an addon
that remaps the provider host to the simulator, as the meter's ``--upstream-map`` does; "addon" is
the real ``bbnet meter run`` with a ledger holding the bottle and its budgets (tokens and USD,
global and per bottle), so every call attributes, reserves, taps and commits. Clients are plain
``httpx2`` over TLS through the proxy (trusting its CA), keep-alive. "direct" is plain HTTP.

Usage: python bench/meter_bench.py [--rounds N] [--json-calls N] [--sse-calls N] [--chunk-delay-ms MS]
       [--throughput-seconds S] [--clients N] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from mitmproxy import http

from bbnet.ledger import Ledger
from bbnet.model import MICROS_PER_USD, Bottle, Budget
from bbnet.names import Scope
from meter.proxy import ensure_ca, run_proxy, setup_logging

BBNET = str(Path(sys.executable).parent / "bbnet")
HOST_URL = "https://api.anthropic.com"  # what clients ask for through a proxy
MODEL = "claude-sonnet-4-5-20250929"  # priced: the USD pools are charged too
PROMPT = "Summarise the budget rules of this host in one short paragraph, please. " * 4


def bodies(stream: bool, variants: int = 101) -> list[bytes]:
    """Request bodies of varying size, as an agent's calls are (no cache sees the same call twice)."""
    return [
        json.dumps({"model": MODEL, "max_tokens": 64, "stream": stream,
                    "messages": [{"role": "user", "content": PROMPT + "more " * i}]}).encode()
        for i in range(variants)
    ]  # fmt: skip


JSON_BODIES, SSE_BODIES = bodies(False), bodies(True)
HEADERS = {"x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01", "content-type": "application/json"}
PATHS = ("direct", "bare", "addon")


# -- the processes ---------------------------------------------------------------------------------


class Remap:
    """The bare proxy's only addon: send every request to the simulator (what --upstream-map does)
    and pass event streams through as they come (mitmproxy's own streaming; without it mitmproxy
    buffers a stream to its end, and the first-byte comparison would be meaningless)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def request(self, flow: http.HTTPFlow) -> None:
        flow.request.scheme, flow.request.host, flow.request.port = "http", self.host, self.port

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and "event-stream" in flow.response.headers.get("content-type", ""):
            flow.response.stream = True


def serve_bare(listen_port: int, sim_port: int, confdir: str) -> None:
    setup_logging()
    asyncio.run(run_proxy([Remap("127.0.0.1", sim_port)], "127.0.0.1", listen_port, confdir))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(process: subprocess.Popen[bytes], port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"meter_bench: {what} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"meter_bench: {what} did not listen on {port} within {timeout:.0f}s")


@contextlib.contextmanager
def processes(workdir: Path, chunk_delay_ms: int, profile: Path | None) -> Iterator[dict[str, int]]:
    """Simulator, bare proxy and metered proxy, listening; all stopped on exit. Yields their ports."""
    ports = {"sim": free_port(), "bare": free_port(), "addon": free_port()}
    db = workdir / "ledger.db"
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("bench", addresses=("127.0.0.1/32",)))
        ledger.set_budget(Budget(Scope.global_(), "*", "tokens", 10**15))
        ledger.set_budget(Budget(Scope.global_(), "*", "usd", 10**6 * MICROS_PER_USD, period="month"))
        ledger.set_budget(Budget(Scope.of_bottle("bench"), "anthropic", "tokens", 10**14, period="day"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BBNET_")}
    ensure_ca(workdir / "confdir")  # before the two proxies start, so they do not race to create it
    logs = (workdir / "logs").open("wb")
    sim_url = f"http://127.0.0.1:{ports['sim']}"
    meter_cmd = [BBNET, "meter", "run", "--listen", f"127.0.0.1:{ports['addon']}", "--db", str(db),
                 "--settings", str(workdir / "no-settings.yml"), "--confdir", str(workdir / "confdir"),
                 "--upstream-map", f"*={sim_url}"]  # fmt: skip
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        meter_cmd = [sys.executable, "-m", "cProfile", "-o", str(profile / "addon.pstats"), *meter_cmd]
    started = [
        subprocess.Popen([BBNET, "sim", "--listen", f"127.0.0.1:{ports['sim']}", "--chunk-delay",
                          str(chunk_delay_ms)], stdout=logs, stderr=logs, env=env),
        subprocess.Popen([sys.executable, __file__, "--serve-bare", str(ports["bare"]), str(ports["sim"]),
                          str(workdir / "confdir")], stdout=logs, stderr=logs, env=env),
        subprocess.Popen(meter_cmd, stdout=logs, stderr=logs, env=env),
    ]  # fmt: skip
    try:
        for process, name in zip(started, ("sim", "bare", "addon"), strict=True):
            wait_listening(process, ports[name], name)
        yield ports
    finally:
        for process in started:
            process.send_signal(signal.SIGINT)  # a clean stop: cProfile writes its stats on the way out
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()


# -- the clients -----------------------------------------------------------------------------------


def client_for(path: str, ports: dict[str, int], ca: Path) -> tuple[httpx2.Client, str]:
    if path == "direct":
        return httpx2.Client(trust_env=False, timeout=30), f"http://127.0.0.1:{ports['sim']}"
    transport = httpx2.HTTPTransport(
        proxy=f"http://127.0.0.1:{ports[path]}", verify=ssl.create_default_context(cafile=str(ca))
    )
    return httpx2.Client(transport=transport, trust_env=False, timeout=30), HOST_URL


def json_latencies(client: httpx2.Client, base: str, count: int) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        response = client.post(
            f"{base}/v1/messages", content=JSON_BODIES[i % len(JSON_BODIES)], headers=HEADERS
        )
        response.read()
        out.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"meter_bench: {base} answered {response.status_code}: {response.text[:200]}")
    return out


@dataclass(frozen=True)
class StreamTiming:
    first_byte_ms: float
    total_ms: float


def sse_timings(client: httpx2.Client, base: str, count: int) -> list[StreamTiming]:
    out = []
    for i in range(count):
        body = SSE_BODIES[i % len(SSE_BODIES)]
        t0 = time.perf_counter()
        first: float | None = None
        with client.stream("POST", f"{base}/v1/messages", content=body, headers=HEADERS) as response:
            for _chunk in response.iter_raw():
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        if response.status_code != 200 or first is None:
            raise SystemExit(f"meter_bench: stream from {base} answered {response.status_code}")
        out.append(StreamTiming((first - t0) * 1000, (end - t0) * 1000))
    return out


def throughput(make: Callable[[], tuple[httpx2.Client, str]], clients: int, seconds: float) -> float:
    """JSON calls per second with ``clients`` keep-alive clients calling back to back."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(clients)

    def worker(index: int) -> None:
        client, base = make()
        with client:
            client.post(
                f"{base}/v1/messages", content=JSON_BODIES[0], headers=HEADERS
            ).read()  # connect first
            barrier.wait()
            while time.perf_counter() < stop:
                body = JSON_BODIES[(index + counts[index]) % len(JSON_BODIES)]
                client.post(f"{base}/v1/messages", content=body, headers=HEADERS).read()
                counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def one_round(path: str, ports: dict[str, int], ca: Path, args: argparse.Namespace) -> dict[str, float]:
    client, base = client_for(path, ports, ca)
    with client:
        json_latencies(client, base, 20)  # warm-up: connections, TLS, caches
        lat = json_latencies(client, base, args.json_calls)
        sse = sse_timings(client, base, args.sse_calls)
    rps = throughput(lambda: client_for(path, ports, ca), args.clients, args.throughput_seconds)
    first = [s.first_byte_ms for s in sse]
    return {
        "json_p50_ms": statistics.median(lat),
        "json_p99_ms": pct(lat, 99),
        "sse_first_byte_p50_ms": statistics.median(first),
        "sse_first_byte_p99_ms": pct(first, 99),
        "sse_total_p50_ms": statistics.median([s.total_ms for s in sse]),
        "streams_first_byte_before_half_total": sum(s.first_byte_ms < s.total_ms / 2 for s in sse) / len(sse),
        "requests_per_s": rps,
    }


def summarise(rounds: list[dict[str, dict[str, float]]], args: argparse.Namespace) -> dict[str, Any]:
    paths = {
        p: {k: round(statistics.median(r[p][k] for r in rounds), 3) for k in rounds[0][p]} for p in PATHS
    }
    bare, addon = paths["bare"], paths["addon"]
    added_ms = round(addon["json_p50_ms"] - bare["json_p50_ms"], 3)
    added_pct = round(100 * added_ms / bare["json_p50_ms"], 1)
    ttfb_ratio = round(addon["sse_first_byte_p50_ms"] / bare["sse_first_byte_p50_ms"], 3)
    stream_ms = paths["direct"]["sse_total_p50_ms"]  # how long the simulator takes to send a stream
    return {
        "config": {
            "rounds": args.rounds,
            "json_calls": args.json_calls,
            "sse_calls": args.sse_calls,
            "chunk_delay_ms": args.chunk_delay_ms,
            "sim_stream_ms": stream_ms,
            "clients": args.clients,
            "throughput_seconds": args.throughput_seconds,
            "cpus": os.cpu_count(),
            "statistic": "median over rounds of each round's figure",
        },
        "paths": paths,
        "addon_vs_bare": {
            "json_p50_added_ms": added_ms,
            "json_p50_added_pct": added_pct,
            "json_p99_added_ms": round(addon["json_p99_ms"] - bare["json_p99_ms"], 3),
            "sse_first_byte_ratio": ttfb_ratio,
            "requests_per_s_ratio": round(addon["requests_per_s"] / bare["requests_per_s"], 3),
            "per_round_json_p50_added_ms": [
                round(r["addon"]["json_p50_ms"] - r["bare"]["json_p50_ms"], 3) for r in rounds
            ],
        },
        "goals": {
            "added_p50_le_0_5_ms": added_ms <= 0.5,
            "added_p50_le_10_pct": added_pct <= 10,
            "sse_first_byte_le_1_05x_bare": ttfb_ratio <= 1.05,
            "first_chunk_before_sim_finishes": addon["sse_first_byte_p50_ms"] < stream_ms
            and addon["streams_first_byte_before_half_total"] == 1.0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-calls", type=int, default=300)
    parser.add_argument("--sse-calls", type=int, default=20)
    parser.add_argument("--chunk-delay-ms", type=int, default=2)
    parser.add_argument("--throughput-seconds", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--profile", type=Path, help="cProfile the metered proxy; stats written here")
    parser.add_argument(
        "--serve-bare", nargs=3, metavar=("PORT", "SIM_PORT", "CONFDIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_bare:
        port, sim_port, confdir = args.serve_bare
        serve_bare(int(port), int(sim_port), confdir)
        return
    with tempfile.TemporaryDirectory(prefix="meter-bench-") as tmp:
        workdir = Path(tmp)
        with processes(workdir, args.chunk_delay_ms, args.profile) as ports:
            ca = workdir / "confdir" / "mitmproxy-ca-cert.pem"
            rounds = [{path: one_round(path, ports, ca, args) for path in PATHS} for _ in range(args.rounds)]
    print(json.dumps(summarise(rounds, args), indent=2))


if __name__ == "__main__":
    main()
