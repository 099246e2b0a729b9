"""The meter's overhead: bare mitmproxy vs mitmproxy + the bbnet addon, on agent-sized bodies.

One run measures the two side by side, interleaved round by round and size by size (so a noisy
neighbour hurts both alike), and prints JSON: per body size, per path, the median over rounds of
JSON-call p50/p99 latency, SSE time to first byte and total time, and requests/s with 4 and 16
concurrent clients; then addon vs bare as deltas (ms) and ratios, and the issue's goals
(+0.3 ms p50 at 50 kB, +0.5 ms at 1 MB, p99 +1 ms, SSE first byte 1.03x, requests/s 0.9x).

Sizes: ``small`` (the 300-800-byte bodies of the first bench) and 50 kB, 250 kB and 1 MB bodies
from ``bench/agent_corpus.py`` (Claude Code, Codex and Gemini CLI conversations, grown turn by
turn): per size, consecutive turns of each agent's conversation from that size on, each agent's
turns in order, so the meter sees conversations grow as it does in a session (and its prefix
memory learns them). Calls rotate over the three agents, each to its own provider's host.

The simulator runs in its own process (``bbnet sim``, a chunk delay gives streams real duration).
"bare" is the same ``meter.proxy.run_proxy`` (same mitmproxy, same options) with only an addon
that remaps the provider host to the simulator, as the meter's ``--upstream-map`` does; "addon" is
the real ``bbnet meter run`` with a ledger holding the bottle and its budgets (tokens and USD,
global and per bottle), so every call attributes, reserves, taps and commits. Clients are plain
``httpx2`` over TLS through the proxy (trusting its CA), keep-alive.

Usage: python bench/meter_bench.py [--quick] [--rounds N] [--json-calls N] [--sse-calls N]
       [--sizes small,50k,250k,1m] [--chunk-delay-ms MS] [--throughput-seconds S] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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

import agent_corpus
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


PATHS = ("bare", "addon")


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
def processes(
    workdir: Path, chunk_delay_ms: int, profile: Path | None, pids: dict[str, int] | None = None
) -> Iterator[dict[str, int]]:
    """Simulator, bare proxy and metered proxy, listening; all stopped on exit. Yields their ports
    (and fills ``pids``, when given, with their process ids: bench/cpu_bench.py reads their CPU)."""
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
    bare_cmd = [sys.executable, __file__, "--serve-bare", str(ports["bare"]), str(ports["sim"]),
                str(workdir / "confdir")]  # fmt: skip
    if profile is not None:  # both proxies, so the two can be compared function by function
        profile.mkdir(parents=True, exist_ok=True)
        meter_cmd = [sys.executable, "-m", "cProfile", "-o", str(profile / "addon.pstats"), *meter_cmd]
        bare_cmd = [sys.executable, "-m", "cProfile", "-o", str(profile / "bare.pstats"), *bare_cmd[1:]]
    started = [
        subprocess.Popen([BBNET, "sim", "--listen", f"127.0.0.1:{ports['sim']}", "--chunk-delay",
                          str(chunk_delay_ms)], stdout=logs, stderr=logs, env=env),
        subprocess.Popen(bare_cmd, stdout=logs, stderr=logs, env=env),
        subprocess.Popen(meter_cmd, stdout=logs, stderr=logs, env=env),
    ]  # fmt: skip
    try:
        for process, name in zip(started, ("sim", "bare", "addon"), strict=True):
            wait_listening(process, ports[name], name)
            if pids is not None:
                pids[name] = process.pid
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


# -- the workload ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request as a client sends it: where, with which headers, which body."""

    url: str
    headers: dict[str, str]
    body: bytes


ANTHROPIC = {
    "x-api-key": "sk-ant-bench",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}
OPENAI = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
GEMINI = {"x-goog-api-key": "bench-key", "content-type": "application/json"}
GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
SIZES = {"small": 0, "50k": 50_000, "250k": 250_000, "1m": 1_000_000}
TURNS_PER_AGENT = 8  # consecutive turns of each agent's conversation per size


def small_calls(stream: bool, variants: int = 101) -> list[Call]:
    """Bodies of varying size, as an agent's calls are (no cache sees the same call twice)."""
    return [
        Call(f"{HOST_URL}/v1/messages", ANTHROPIC, json.dumps({
            "model": MODEL, "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": PROMPT + "more " * i}]}).encode())
        for i in range(variants)
    ]  # fmt: skip


def agent_call(agent: str, body: bytes, stream: bool) -> Call:
    """A corpus turn as its CLI sends it, streamed or not (the CLIs stream; JSON calls turn it off)."""
    doc = json.loads(body)
    if agent == "gemini-cli":
        url = f"{GEMINI_URL}:streamGenerateContent?alt=sse" if stream else f"{GEMINI_URL}:generateContent"
        return Call(url, GEMINI, body)
    doc["stream"] = stream
    out = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    if agent == "codex":
        return Call("https://api.openai.com/v1/responses", OPENAI, out)
    return Call(f"{HOST_URL}/v1/messages", ANTHROPIC, out)


@functools.cache
def conversation(agent: str) -> list[agent_corpus.Turn]:
    return agent_corpus.conversation(agent)


def agent_calls(target: int, stream: bool) -> list[Call]:
    """Per agent, ``TURNS_PER_AGENT`` consecutive turns around the first of ``target`` bytes (ending
    at the conversation's last turn, ~1 MB); the agents' calls interleaved, each agent's in order."""
    per_agent = []
    for agent in agent_corpus.CORPUS:
        turns = conversation(agent)
        at = next((i for i, t in enumerate(turns) if len(t.body) >= target), len(turns) - 1)
        first = max(0, min(at - TURNS_PER_AGENT // 2, len(turns) - TURNS_PER_AGENT))
        per_agent.append([agent_call(agent, t.body, stream) for t in turns[first : first + TURNS_PER_AGENT]])
    return [calls[i] for i in range(TURNS_PER_AGENT) for calls in per_agent if i < len(calls)]


@dataclass(frozen=True)
class Workload:
    size: str
    json: list[Call]
    sse: list[Call]

    @property
    def body_bytes(self) -> int:
        return round(statistics.median(len(c.body) for c in self.json))


def workloads(sizes: list[str]) -> list[Workload]:
    out = []
    for size in sizes:
        if size == "small":
            out.append(Workload(size, small_calls(False), small_calls(True)))
        else:
            out.append(Workload(size, agent_calls(SIZES[size], False), agent_calls(SIZES[size], True)))
    return out


# -- the clients -----------------------------------------------------------------------------------


def client_for(path: str, ports: dict[str, int], ca: Path) -> httpx2.Client:
    transport = httpx2.HTTPTransport(
        proxy=f"http://127.0.0.1:{ports[path]}", verify=ssl.create_default_context(cafile=str(ca))
    )
    return httpx2.Client(transport=transport, trust_env=False, timeout=60)


def post(client: httpx2.Client, call: Call) -> None:
    response = client.post(call.url, content=call.body, headers=call.headers)
    response.read()
    if response.status_code != 200:
        raise SystemExit(f"meter_bench: {call.url} answered {response.status_code}: {response.text[:200]}")


def timed_post(client: httpx2.Client, call: Call) -> float:
    t0 = time.perf_counter()
    post(client, call)
    return (time.perf_counter() - t0) * 1000


@dataclass(frozen=True)
class StreamTiming:
    first_byte_ms: float
    total_ms: float


def timed_stream(client: httpx2.Client, call: Call) -> StreamTiming:
    t0 = time.perf_counter()
    first: float | None = None
    with client.stream("POST", call.url, content=call.body, headers=call.headers) as response:
        for _chunk in response.iter_raw():
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    if response.status_code != 200 or first is None:
        raise SystemExit(f"meter_bench: stream from {call.url} answered {response.status_code}")
    return StreamTiming((first - t0) * 1000, (end - t0) * 1000)


def throughput(make: Callable[[], httpx2.Client], calls: list[Call], clients: int,
               seconds: float) -> tuple[int, float]:  # fmt: skip
    """JSON calls made, and the seconds they took, by ``clients`` keep-alive clients calling back to
    back for about ``seconds``."""
    counts = [0] * clients
    window: list[float] = []  # [start, stop], set once every client has connected

    def go() -> None:
        now = time.perf_counter()
        window[:] = [now, now + seconds]

    barrier = threading.Barrier(clients, action=go)

    def worker(index: int) -> None:
        with make() as client:
            post(client, calls[index % len(calls)])  # connect first
            barrier.wait()
            while time.perf_counter() < window[1]:
                post(client, calls[(index + counts[index]) % len(calls)])
                counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - window[0]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def one_round(
    work: Workload, ports: dict[str, int], ca: Path, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Both paths, call by call: each call goes to bare and to addon back to back (in turn first),
    so a busy neighbour slows both alike; requests/s in alternating windows for the same reason."""
    clients = {p: client_for(p, ports, ca) for p in PATHS}
    lat: dict[str, list[float]] = {p: [] for p in PATHS}
    sse: dict[str, list[StreamTiming]] = {p: [] for p in PATHS}
    try:
        for i in range(min(20, len(work.json))):  # warm-up: connections, TLS, the meter's memory
            for p in PATHS:
                post(clients[p], work.json[i])
        for i in range(args.json_calls):
            for p in PATHS if i % 2 == 0 else PATHS[::-1]:
                lat[p].append(timed_post(clients[p], work.json[i % len(work.json)]))
        for i in range(args.sse_calls):
            for p in PATHS if i % 2 == 0 else PATHS[::-1]:
                sse[p].append(timed_stream(clients[p], work.sse[i % len(work.sse)]))
    finally:
        for client in clients.values():
            client.close()
    out = {}
    for p in PATHS:
        first = [s.first_byte_ms for s in sse[p]]
        out[p] = {
            "json_p50_ms": statistics.median(lat[p]),
            "json_p99_ms": pct(lat[p], 99),
            "sse_first_byte_p50_ms": statistics.median(first),
            "sse_first_byte_p99_ms": pct(first, 99),
            "sse_total_p50_ms": statistics.median([s.total_ms for s in sse[p]]),
            "streams_first_byte_before_half_total": sum(s.first_byte_ms < s.total_ms / 2 for s in sse[p])
            / len(sse[p]),
        }
    out["addon"]["json_paired_added_p50_ms"] = statistics.median(
        a - b for a, b in zip(lat["addon"], lat["bare"], strict=True)
    )
    for n in CLIENTS:
        done = {p: [0, 0.0] for p in PATHS}  # calls, seconds
        for w in range(WINDOWS):
            for p in PATHS if w % 2 == 0 else PATHS[::-1]:
                calls, seconds = throughput(
                    functools.partial(client_for, p, ports, ca),
                    work.json,
                    n,
                    args.throughput_seconds / WINDOWS,
                )
                done[p][0] += calls
                done[p][1] += seconds
        for p in PATHS:
            out[p][f"requests_per_s_{n}"] = done[p][0] / done[p][1]
    return out


WINDOWS = 4  # requests/s: each path's time split in this many windows, alternating
CLIENTS = (4, 16)
GOAL_P50_MS = {"50k": 0.3, "250k": 0.5, "1m": 0.5}  # the goals (250k: between its two)


def compare(paths: dict[str, dict[str, float]]) -> dict[str, float]:
    bare, addon = paths["bare"], paths["addon"]
    out = {
        "json_p50_added_ms": round(addon["json_p50_ms"] - bare["json_p50_ms"], 3),
        "json_p50_ratio": round(addon["json_p50_ms"] / bare["json_p50_ms"], 3),
        "json_p50_of_paired_added_ms": round(addon["json_paired_added_p50_ms"], 3),
        "json_p99_added_ms": round(addon["json_p99_ms"] - bare["json_p99_ms"], 3),
        "json_p99_ratio": round(addon["json_p99_ms"] / bare["json_p99_ms"], 3),
        "sse_first_byte_added_ms": round(addon["sse_first_byte_p50_ms"] - bare["sse_first_byte_p50_ms"], 3),
        "sse_first_byte_ratio": round(addon["sse_first_byte_p50_ms"] / bare["sse_first_byte_p50_ms"], 3),
    }
    for clients in CLIENTS:
        key = f"requests_per_s_{clients}"
        out[f"{key}_ratio"] = round(addon[key] / bare[key], 3)
    return out


def goals(size: str, vs: dict[str, float]) -> dict[str, bool]:
    out = {}
    if size in GOAL_P50_MS:  # the median of the per-call differences: the steadier figure on a busy host
        out[f"p50_le_{GOAL_P50_MS[size]}_ms"] = vs["json_p50_of_paired_added_ms"] <= GOAL_P50_MS[size]
    out["p99_le_1_ms"] = vs["json_p99_added_ms"] <= 1.0
    out["sse_first_byte_le_1_03x"] = vs["sse_first_byte_ratio"] <= 1.03
    for clients in CLIENTS:
        out[f"requests_per_s_{clients}_ge_0_9x"] = vs[f"requests_per_s_{clients}_ratio"] >= 0.9
    return out


def summarise(work: list[Workload], rounds: list[dict[str, dict[str, dict[str, float]]]],
              args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    sizes: dict[str, Any] = {}
    for w in work:
        per = [r[w.size] for r in rounds]
        paths = {p: {k: round(statistics.median(r[p][k] for r in per), 3) for k in per[0][p]} for p in PATHS}
        vs = compare(paths)
        sizes[w.size] = {"body_bytes_p50": w.body_bytes, "paths": paths, "addon_vs_bare": vs,
                         "per_round_json_p50_added_ms": [compare(r)["json_p50_added_ms"] for r in per],
                         "goals": goals(w.size, vs),
                         "first_chunk_before_stream_ends": paths["addon"]["streams_first_byte_before_half_total"] == 1.0}  # fmt: skip
    return {
        "config": {
            "rounds": args.rounds,
            "json_calls": args.json_calls,
            "sse_calls": args.sse_calls,
            "chunk_delay_ms": args.chunk_delay_ms,
            "clients": list(CLIENTS),
            "throughput_seconds": args.throughput_seconds,
            "cpus": os.cpu_count(),
            "statistic": "median over rounds of each round's figure",
        },
        "sizes": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: 2 rounds, fewer calls")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-calls", type=int, default=150)
    parser.add_argument("--sse-calls", type=int, default=20)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated, of " + ",".join(SIZES))
    parser.add_argument("--chunk-delay-ms", type=int, default=2)
    parser.add_argument("--throughput-seconds", type=float, default=2.0)
    parser.add_argument(
        "--profile", type=Path, help="cProfile both proxies; addon.pstats and bare.pstats written here"
    )
    parser.add_argument(
        "--serve-bare", nargs=3, metavar=("PORT", "SIM_PORT", "CONFDIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_bare:
        port, sim_port, confdir = args.serve_bare
        serve_bare(int(port), int(sim_port), confdir)
        return
    if args.quick:
        args.rounds, args.json_calls, args.sse_calls, args.throughput_seconds = 2, 60, 10, 1.0
    sizes = agent_corpus.parse_sizes(parser, args.sizes, SIZES)
    work = workloads(sizes)
    with tempfile.TemporaryDirectory(prefix="meter-bench-") as tmp:
        workdir = Path(tmp)
        with processes(workdir, args.chunk_delay_ms, args.profile) as ports:
            ca = workdir / "confdir" / "mitmproxy-ca-cert.pem"
            rounds = [{w.size: one_round(w, ports, ca, args) for w in work} for _ in range(args.rounds)]
    print(json.dumps(summarise(work, rounds, args), indent=2))


if __name__ == "__main__":
    main()
