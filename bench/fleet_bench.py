"""Fleet budgets: leased reserve+commit throughput per host, reserve latency against the plain SQLite
ledger, fleet overshoot under contention, and how long a killed host's slice takes to come back.

Hosts are processes (tests/fleet_host.py), each with its own SQLite ledger, all on one PostgreSQL
server started with fsync on (honest commit latency). Prints one JSON object.

    PYTHONPATH=. .venv/bin/python bench/fleet_bench.py [--seconds 5] [--writers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bbnet.fleet_lease import open_fleet
from bbnet.model import Budget
from bbnet.names import Scope
from tests import pgserver

REPO = Path(__file__).resolve().parents[1]


def start_host(work: Path, url: str | None, node: str, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.fleet_host", "--db", str(work / f"{node}.db"), "--node", node, *args]
    if url:
        argv += ["--fleet", url]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["ready"]
    return proc


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


def set_budget(url: str, limit: int) -> None:
    with open_fleet(url) as f:
        f.set_budget(Budget(Scope.global_(), "anthropic", "tokens", limit, "total", "cli"))


def pool(url: str) -> tuple[int, int]:
    with open_fleet(url) as f:
        (p,) = f.pools()
        return p.used, p.reserved


def run_hosts(work: Path, url: str | None, n: int, *args: str) -> list[dict[str, Any]]:
    go = work / f"go-{n}-{time.monotonic_ns()}"
    procs = [
        start_host(work, url, f"h{n}-{i}-{time.monotonic_ns()}", *args, "--go", str(go)) for i in range(n)
    ]
    go.touch()
    return [finish(p) for p in procs]


def throughput(work: Path, new_url: Any, seconds: float, writers: int) -> dict[str, Any]:
    """Per host count: hosts each on their own SQLite ledger alone (the baseline, same CPU sharing),
    then the same hosts leasing one fleet budget; the p99 ratio compares the two."""
    out: dict[str, Any] = {}
    args = ("--writers", str(writers), "--seconds", str(seconds), "--slice", "200000")
    for n in (1, 2, 4):
        sqlite = run_hosts(work, None, n, *args)
        url = new_url()
        set_budget(url, 10**12)
        fleet = run_hosts(work, url, n, *args)
        row: dict[str, Any] = {}
        for name, results in (("sqlite", sqlite), ("fleet", fleet)):
            row[name] = {
                "pairs_per_s_per_host": [round(r["calls"] / r["seconds"]) for r in results],
                "p50_ms": round(max(r["p50_ms"] for r in results), 3),
                "p99_ms": round(max(r["p99_ms"] for r in results), 3),
            }
        row["p99_ratio_fleet_vs_sqlite"] = round(row["fleet"]["p99_ms"] / row["sqlite"]["p99_ms"], 2)
        out[f"{n}_hosts"] = row
    return out


def overshoot(work: Path, url: str) -> dict[str, Any]:
    limit = 60_000  # 200 calls of 300 tokens for 4 hosts x 8 writers
    set_budget(url, limit)
    results = run_hosts(work, url, 4, "--writers", "8", "--seconds", "120", "--slice", "2000")
    used, reserved = pool(url)
    return {"hosts": 4, "writers_per_host": 8, "limit": limit, "fleet_used": used, "fleet_reserved_after": reserved,
            "overshoot": max(0, used - limit), "sum_local_used": sum(r["local_used"] for r in results),
            "calls": sum(r["calls"] for r in results)}  # fmt: skip


def dead_slice(work: Path, url: str, lease_seconds: float) -> dict[str, Any]:
    set_budget(url, 10**9)
    common = ("--writers", "1", "--lease-seconds", str(lease_seconds), "--slice", "5000")
    doomed = start_host(work, url, "doomed", *common, "--seconds", "1", "--hold")
    time.sleep(2)  # it leased, spent, settled and now holds its slice
    survivor = start_host(work, url, "survivor", *common, "--seconds", "600", "--stop", str(work / "stop"))
    doomed.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    doomed.wait()
    with open_fleet(url) as f:
        held = next(r["granted"] - r["consumed"] for r in f.fleet_leases() if r["node"] == "doomed")
    while True:
        with open_fleet(url) as f:
            lease = next(r for r in f.fleet_leases() if r["node"] == "doomed")
        if lease["granted"] == lease["consumed"]:
            break
        time.sleep(0.05)
    back = time.monotonic() - killed
    (work / "stop").touch()
    finish(survivor)
    return {"lease_seconds": lease_seconds, "slice_held": held, "seconds_to_return": round(back, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--lease-seconds", type=float, default=5.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp, pgserver.running(fsync=True) as server:
        work = Path(tmp)
        result = {
            "throughput": throughput(work, server.new_database, a.seconds, a.writers),
            "overshoot": overshoot(work, server.new_database()),
            "dead_host": dead_slice(work, server.new_database(), a.lease_seconds),
            "writers_per_host": a.writers,
            "cores": os.cpu_count(),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
