"""One simulated host of a fleet, as a process: its own SQLite ledger, a lease manager on the fleet
database, and writer threads doing reserve + commit against one global pool (tests and bench).

    python -m tests.fleet_host --db LOCAL --fleet URL --node NAME [--writers 8] [--seconds 5]

Each writer reserves ``--input`` + ``--max-output`` tokens and commits usage within that (the case
where every call's max tokens are known), until ``--seconds`` pass, the pool is spent for good, or the
file ``--stop`` appears. Prints one JSON line: calls committed, refusals, fail-closed errors, reserve
latencies (p50/p99 ms), and the host's local used. ``--go`` holds the writers until that file appears. ``--hold`` skips the clean stop (settle and return
the slice), as a host that is killed would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from bbnet import fleet
from bbnet.fleet_lease import FleetLedger, LeaseManager, open_fleet
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Bottle, Outcome, ReserveRequest, UsageRecord


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--fleet", default=None, help="fleet database URL; none: a plain local ledger")
    ap.add_argument("--node", default="host")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--input", type=int, default=100)
    ap.add_argument("--max-output", type=int, default=200)
    ap.add_argument("--slice", type=int, default=2000)
    ap.add_argument("--lease-seconds", type=float, default=30.0)
    ap.add_argument("--settle-seconds", type=float, default=0.5)
    ap.add_argument("--stop", default=None)
    ap.add_argument("--hold", action="store_true")
    ap.add_argument("--go", default=None, help="start writing once this file exists")
    a = ap.parse_args(argv)

    ledger: Ledger
    manager = None
    if a.fleet:
        ledger = FleetLedger.open(a.db, node=a.node)
        cfg = fleet.SliceConfig(slice_tokens=a.slice, lease_seconds=a.lease_seconds,
                                settle_seconds=a.settle_seconds, idle_seconds=3600)  # fmt: skip
        manager = LeaseManager(ledger, a.fleet, a.node, cfg, connect=open_fleet)
        ledger.lease = manager
        manager.begin(time.time())
        manager.start()
    else:
        ledger = Ledger.open(a.db, node=a.node)
    if ledger.get_bottle("b1") is None:
        ledger.add_bottle(Bottle("b1"))
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    while a.go and not Path(a.go).exists():
        time.sleep(0.01)

    stop_at = time.monotonic() + a.seconds
    lock = threading.Lock()
    counts = {"calls": 0, "denied": 0, "errors": 0}
    latencies: list[float] = []

    def writer(n: int) -> None:
        spent = 0
        while time.monotonic() < stop_at and not (a.stop and Path(a.stop).exists()) and spent < 50:
            key = f"{a.node}-{n}-{uuid.uuid4().hex}"
            req = ReserveRequest(key, "b1", f"w{n}", "anthropic", "claude-sonnet-4", a.input, a.max_output)
            t0 = time.perf_counter()
            try:
                r = ledger.reserve(req)
            except LedgerError:
                with lock:
                    counts["errors"] += 1
                time.sleep(0.05)
                continue
            dt = (time.perf_counter() - t0) * 1000
            if r.outcome is Outcome.DENY:
                spent = spent + 1 if r.exhausted else spent
                with lock:
                    counts["denied"] += 1
                time.sleep(0.01)
                continue
            usage = UsageRecord(
                "b1", f"w{n}", "anthropic", "claude-sonnet-4", a.input, r.allowed_output_tokens
            )
            ledger.commit(key, usage)
            with lock:
                counts["calls"] += 1
                latencies.append(dt)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(a.writers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if a.hold:
        time.sleep(3600)  # killed from outside
    if manager is not None:
        manager.stop()
    used = sum(p.used for p in ledger.pools() if p.scope == "global")
    ledger.close()
    print(json.dumps({**counts, "node": a.node, "seconds": elapsed, "local_used": used,
                      "p50_ms": _percentile(latencies, 0.5), "p99_ms": _percentile(latencies, 0.99)}),
          flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
