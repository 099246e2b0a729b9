"""Ledger throughput: reserve+commit pairs per second with 1 and 4 writer processes.

Prints JSON: pairs/s, p50/p99 reserve and commit latency (ms) and the overshoot against a
contended budget. A commit's p99 is SQLite's automatic WAL checkpoint, which runs inside the commit
that crosses 1,000 WAL pages. ``--meter``: each writer's ledger as the meter runs it, its checkpoints
on a thread (bbnet/checkpoint.py) and its commits as group commits (``write_batch``; one commit per
batch, as an idle meter writes them). ``--postgres``: the same on a PostgreSQL ledger (a real server from
Debian's packages, fsync on, in a temporary directory; run from the repository with PYTHONPATH=.).
Usage: python bench/ledger_bench.py [--seconds S] [--dir DIR] [--meter] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, Commit, Outcome, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.prices import rates

MODEL = "claude-sonnet-4-5-20250929"


def _setup(db: str, limit: int) -> None:
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("team"))
        ledger.add_bottle(Bottle("bench", parent="team"))
        ledger.set_budget(Budget(Scope.global_(), "anthropic", "tokens", 10**12))
        ledger.set_budget(Budget(Scope.global_(), "*", "usd", 10**12, period="month"))
        ledger.set_budget(Budget(Scope.of_bottle("team"), "*", "tokens", 10**12, period="day"))
        ledger.set_budget(Budget(Scope.of_bottle("bench"), "anthropic", "tokens", limit))


def _writer(db: str, worker: int, seconds: float, out: mp.Queue, meter: bool) -> None:
    r8 = rates("anthropic", MODEL, 500)
    latencies: list[float] = []
    commits: list[float] = []
    pairs = 0
    with Ledger.open(db) as ledger:
        checkpoints = ledger.checkpoint_in_background() if meter else None
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            key = f"w{worker}-{i}"
            i += 1
            t0 = time.perf_counter()
            res = ledger.reserve(
                ReserveRequest(key, "bench", f"agent{worker}", "anthropic", MODEL, 500, 500, r8)
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            if res.outcome is Outcome.DENY:
                continue
            usage = UsageRecord(
                "bench",
                f"agent{worker}",
                "anthropic",
                MODEL,
                input_tokens=500,
                output_tokens=res.allowed_output_tokens,
            )
            t1 = time.perf_counter()
            if meter:
                ledger.write_batch([Commit(key, usage)])
            else:
                ledger.commit(key, usage)
            commits.append((time.perf_counter() - t1) * 1000)
            pairs += 1
        if checkpoints is not None:
            checkpoints.stop()
    out.put((pairs, latencies, commits))


def _p99(values: list[float]) -> float:
    return round(values[int(len(values) * 0.99) - 1], 3)


def run(writers: int, seconds: float, db: str, limit: int, meter: bool) -> dict[str, float]:
    _setup(db, limit)
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, w, seconds, q, meter)) for w in range(writers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    pairs = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    com = sorted(x for r in results for x in r[2])
    with Ledger.open(db) as ledger:
        used = next(p.used for p in ledger.pools() if p.scope == "bottle:bench")
    return {
        "writers": writers,
        "pairs": pairs,
        "pairs_per_s": round(pairs / seconds, 1),
        "wall_s": round(wall, 2),
        "reserve_p50_ms": round(statistics.median(lat), 3),
        "reserve_p99_ms": _p99(lat),
        "commit_p50_ms": round(statistics.median(com), 3),
        "commit_p99_ms": _p99(com),
        "limit": limit,
        "used": used,
        "overshoot": max(0, used - limit),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--meter", action="store_true", help="checkpoints on a thread, commits as group commits")
    ap.add_argument("--postgres", action="store_true", help="a PostgreSQL ledger instead of a SQLite file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, ExitStack() as stack:
        if args.postgres:
            from tests import pgserver

            server = stack.enter_context(pgserver.running(fsync=True))
            ledgers: Iterator[str] = (server.new_database("bench") for _ in range(3))
        else:
            ledgers = (str(Path(tmp) / f"bench-{i}.db") for i in range(3))
        # Unbounded budget for throughput; then a small one that must be contended and never overshot.
        one = run(1, args.seconds, next(ledgers), 10**12, args.meter)
        four = run(4, args.seconds, next(ledgers), 10**12, args.meter)
        tight = run(4, min(args.seconds, 3.0), next(ledgers), 1_000_000, args.meter)
    json.dump(
        {
            "one_writer": one,
            "four_writers": four,
            "contended_4_writers_1M_tokens": tight,
            "backend": "postgresql" if args.postgres else "sqlite",
            "as_the_meter_writes": args.meter,
            "python": sys.version.split()[0],
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
