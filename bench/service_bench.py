"""`bbnet serve` figures; prints JSON. Run as root: ``python bench/service_bench.py [CROSSINGS]``.

* Budget crossing → kernel drop: a real `bbnet serve` (subprocess) in front of the simulator;
  bottles made by the enforcer. Each crossing sets the bottle's budget to what it has used plus one
  call, makes that call through the meter from inside the bottle (the commit exhausts the pool),
  while a UDP probe (a packet every 0.1 ms from the bottle to the host, allowed by the bottle's
  rules) runs. Measured: from the moment the client has the whole answer (the meter commits just
  after sending it, so this is at or before the commit) to the kernel receive time of the probe's
  last packet: the drop, as the bottle sees it. Also the controller's own ``noticed_to_applied_ms``
  (the commit hook's wake-up → set element in the kernel), from its actions rows.
* Drift repair: bbnet's table deleted (and, when bbnet's is the host's only table, ``nft flush
  ruleset``) → the cutoff set back in the kernel, polled every 2 ms.

Holds the root tests' lock (one nftables table per host); removes all it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import httpx2

from bbnet.ledger import Ledger
from bbnet.model import Budget
from bbnet.names import Scope
from enforcer import actions, bottles
from enforcer.nft import Nft
from meter.sim import start_sim
from netrules import render

POOL = IPv4Network("10.243.224.0/20")
BOTTLES = 20
PROBE_PORT = 9997
DRIFT_SAMPLES = 20
SO_TIMESTAMPNS = 35  # Linux; not exported by the socket module
BBNET = str(Path(sys.executable).parent / "bbnet")
# A tool call's arguments: the estimator counts them as compact JSON (8 chars a token), the simulator
# as prose (4): real input exceeds the reservation's estimate, so the commit itself crosses the limit.
# (With prose only, the estimate is high, DEGRADE trims the call to fit, and a pool is only ever found
# spent by the next call's DENY: the controller's other wake-up, timed the same way.)
BODY = {
    "model": "claude-sonnet-4-5-20250929", "max_tokens": 16,
    "messages": [
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search",
                                           "input": {"content": "budget " * 100}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]},
    ],
}  # fmt: skip
HEADROOM = 30  # a crossing's room: the call's real usage less this (still above the estimate + output)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def summary(values: list[float]) -> dict[str, float | int]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": round(max(values), 2), "mean": round(statistics.fmean(values), 2)}  # fmt: skip


def in_netns(netns: str) -> None:
    """Move the calling thread (only it) into ``netns``: its sockets are the bottle's."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        os.setns(fd, os.CLONE_NEWNET)
    finally:
        os.close(fd)


class Probe:
    """UDP packets from one bottle to the host every 0.1 ms; kernel receive times per source."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", PROBE_PORT))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.2)
        self.last: dict[str, float] = {}
        self.closed = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.closed:
            try:
                _data, ancillary, _flags, addr = self.sock.recvmsg(16, 64)
            except TimeoutError:
                continue
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    self.last[addr[0]] = seconds + nanos / 1e9

    def send_from(self, netns: str, host: str, stop: threading.Event) -> threading.Thread:
        def send() -> None:
            in_netns(netns)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                while not stop.is_set():
                    with contextlib.suppress(OSError):
                        s.sendto(b"probe", (host, PROBE_PORT))
                    time.sleep(0.0001)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.closed = True
        self.thread.join()
        self.sock.close()


def call_from(netns: str, proxy: str, ca: str) -> tuple[int, float]:
    """One Anthropic call through the meter from inside the bottle: (status, time.time() at the end);
    status 0 when no answer came (the cutoff dropped it)."""
    out: list[tuple[int, float]] = []

    def run() -> None:
        in_netns(netns)
        with httpx2.Client(proxy=proxy, verify=ca, timeout=2) as client:
            try:
                resp = client.post("https://api.anthropic.com/v1/messages", json=BODY,
                                   headers={"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"})  # fmt: skip
                resp.read()
            except httpx2.TransportError:
                out.append((0, time.time()))
                return
            out.append((resp.status_code, time.time()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out[0]


def used(ledger: Ledger, name: str) -> int:
    return next(p.used for p in ledger.pools() if p.scope == f"bottle:{name}")


def crossings(ledger: Ledger, made: list[tuple[str, str, str]], proxy_port: int, ca: str,
              count: int) -> dict[str, Any]:  # fmt: skip
    probe = Probe()
    drops: list[float] = []
    missed = lost = 0
    try:
        for name, netns, host in made:  # one call each with room: the cost of a call
            ledger.set_budget(Budget(Scope.of_bottle(name), "anthropic", "tokens", 10**9, "total", "cli"))
            call_from(netns, f"http://{host}:{proxy_port}", ca)
        cost = used(ledger, made[0][0])
        for i in range(count):
            name, netns, host = made[i % len(made)]
            ledger.set_budget(Budget(Scope.of_bottle(name), "anthropic", "tokens", used(ledger, name) + cost - HEADROOM,
                                     "total", "cli"))  # fmt: skip
            if ledger.desired_state(name).state != "open":
                actions.act(ledger, "restore", name, reason="bench", actor="bench")
            stop = threading.Event()
            sender = probe.send_from(netns, host, stop)
            time.sleep(0.02)
            status, answered = call_from(netns, f"http://{host}:{proxy_port}", ca)
            time.sleep(0.25)
            stop.set()
            sender.join()
            last = probe.last.get(str(bottles.get(ledger, name).addresses[0]).split("/")[0], 0.0)
            if status == 0:
                lost += 1
                continue
            if status != 200 or ledger.desired_state(name).state == "open":
                missed += 1
                continue
            drops.append((last - answered) * 1000)  # < 0: the kernel dropped before the answer was read
    finally:
        probe.close()
    applied = [
        json.loads(a.detail or "{}")["noticed_to_applied_ms"]
        for a in ledger.actions(limit=100000)
        if a.actor == "controller" and a.action == "cutoff"
    ]
    return {"answer_to_last_probe_packet_ms": summary(drops), "controller_noticed_to_applied_ms": summary(applied),
            "calls_that_did_not_cross": missed,
            "crossing_calls_whose_answer_the_cutoff_dropped": lost, "tokens_per_call": cost}  # fmt: skip


def drift(nft: Nft, cut: set[str]) -> dict[str, Any]:
    """Time from breaking bbnet's table to the cutoff set being back, as the kernel reports it."""

    def repaired_after(breaker: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(breaker, check=True)
        while True:
            with contextlib.suppress(Exception):
                if set(nft.cutoff_counters()) == cut:
                    return (time.perf_counter() - started) * 1000
            time.sleep(0.002)

    out: dict[str, Any] = {}
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout.split()
    breakers = {"delete_table": ["nft", "delete", "table", render.FAMILY, render.TABLE]}
    if [" ".join(tables[i : i + 3]) for i in range(0, len(tables), 3)] == [
        f"table {render.FAMILY} {render.TABLE}"
    ]:
        breakers["flush_ruleset"] = ["nft", "flush", "ruleset"]
    else:
        out["flush_ruleset"] = "skipped: the host has tables besides bbnet's"
    for label, argv in breakers.items():
        samples = []
        for _ in range(DRIFT_SAMPLES):
            samples.append(repaired_after(argv))
            time.sleep(0.1)
        out[label] = summary(samples)
    return out


def make_bottles(ledger: Ledger, proxy_port: int) -> list[tuple[str, str, str]]:
    """BOTTLES bottles that may also send the probe's UDP to their host end: (name, netns, host)."""
    made = []
    for i, subnet in zip(range(BOTTLES), POOL.subnets(new_prefix=30), strict=False):
        host = str(subnet.network_address + 1)
        launch = bottles.Launch(f"sbench{i}", allow=(f"udp:{host}:{PROBE_PORT}",), proxy_port=proxy_port)
        bottle = bottles.create(ledger, launch, addr=f"{subnet.network_address + 2}/30")
        made.append((bottle.name, str(bottle.netns), host))
    return made


def start_serve(work: Path, db: Path, port: int, sim_url: str) -> subprocess.Popen[bytes]:
    """`bbnet serve` in front of the simulator; returns once the meter listens."""
    (work / "settings.yml").write_text("lease_seconds: 30\n")
    log = work / "serve.stderr"
    argv = [BBNET, "serve", "--listen", f"0.0.0.0:{port}", "--upstream-map", f"*={sim_url}", "--db", str(db),
            "--settings", str(work / "settings.yml"), "--confdir", str(work / "confdir"),
            "--lock", str(work / "serve.lock")]  # fmt: skip
    with log.open("wb") as stderr:
        serve = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while b"serving: meter listening" not in log.read_bytes():
        if serve.poll() is not None or time.monotonic() > deadline:
            serve.kill()
            sys.exit(f"service_bench: bbnet serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return serve


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("service_bench: needs root")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with open("/tmp/bbnet-root-tests.lock", "w") as lock, tempfile.TemporaryDirectory() as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        work = Path(tmp)
        sim = start_sim()
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            port = int(s.getsockname()[1])
        ledger = Ledger.open(work / "ledger.db")
        made: list[tuple[str, str, str]] = []
        serve = None
        try:
            made = make_bottles(ledger, port)
            serve = start_serve(work, work / "ledger.db", port, sim.url)
            ca = str(work / "confdir" / "mitmproxy-ca-cert.pem")
            result: dict[str, Any] = {
                "bottles": BOTTLES,
                "crossings": crossings(ledger, made, port, ca, count),
            }
            cut = [bottles.get(ledger, n).veth for n, _, _ in made if ledger.desired_state(n).state != "open"]
            result["drift_repair_ms"] = drift(Nft(), {v for v in cut if v})
            print(json.dumps({"service": result}, indent=2))
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(timeout=10)
            for name, _, _ in made:
                with contextlib.suppress(Exception):
                    bottles.remove(ledger, name)
            with contextlib.suppress(Exception):
                Nft().run([{"delete": {"table": {"family": render.FAMILY, "name": render.TABLE}}}])
            ledger.close()
            sim.stop()


if __name__ == "__main__":
    main()
