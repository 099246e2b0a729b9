"""What the metrics cost per call: the wrapped ledger's reserve+commit against the bare one, on
twin real SQLite files, the metrics' own work alone, the meter hooks on and off, one scrape.

Prints JSON: microseconds per reserve+commit pair bare / instrumented (medians of ``--rounds``
rounds of ``--pairs`` pairs, interleaved so both see the same machine; on a busy machine their
difference is within the noise), the metrics' own work per commit and per reserve measured alone
(what the wrappers add: the figure to go by), per hook call on and off, and the scrape's time
and size with ``--pools`` pools in the ledger.
Usage: python bench/metrics_bench.py [--rounds 5] [--pairs 2000] [--pools 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bbnet import metrics
from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, CommitResult, Outcome, ReserveRequest, ReserveResult, UsageRecord
from bbnet.names import Scope
from bbnet.prices import rates

MODEL = "claude-sonnet-4-5-20250929"


def pairs(ledger: Ledger, n: int, tag: str) -> float:
    """Microseconds per reserve+commit pair."""
    r8 = rates("anthropic", MODEL, 500)
    started = time.perf_counter()
    for i in range(n):
        key = f"{tag}-{i}"
        ledger.reserve(ReserveRequest(key, "b0", "agent", "anthropic", MODEL, 500, 200, r8))
        ledger.commit(key, UsageRecord("b0", "agent", "anthropic", MODEL, input_tokens=480, output_tokens=150,
                                       latency_ms=12.5))  # fmt: skip
    return (time.perf_counter() - started) / n * 1e6


def setup(db: Path, pools: int) -> Ledger:
    ledger = Ledger.open(db)
    for i in range(pools):
        ledger.add_bottle(Bottle(f"b{i}"))
        ledger.set_budget(Budget(Scope.of_bottle(f"b{i}"), "anthropic", "tokens", 10**12))
    return ledger


def observe_us(m: metrics.Metrics, n: int) -> tuple[float, float]:
    """Microseconds per commit and per reserve the metrics add (what the wrappers do besides the call)."""
    usage = UsageRecord(
        "b0", "agent", "anthropic", MODEL, input_tokens=480, output_tokens=150, latency_ms=12.5
    )
    done = CommitResult(True, "k", 0.0036)
    allowed = ReserveResult(Outcome.ALLOW, "k", 700)
    hist = m.ledger_ops.labels("commit")
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        m.observe_commit(usage, done)
        hist.observe(time.perf_counter() - t0)
    commit = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        m.observe_reserve("anthropic", allowed)
        hist.observe(time.perf_counter() - t0)
    return commit, (time.perf_counter() - started) / n * 1e6


def hook_us(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        metrics.deny("BUDGET_DENIED", "anthropic")
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--pools", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare, wrapped = (setup(Path(tmp) / f"{name}.db", args.pools) for name in ("bare", "wrapped"))
        m = metrics.enable()
        m.registry.register(metrics.LedgerGauges(wrapped))
        metrics.instrument(wrapped, m)
        plain: list[float] = []
        timed: list[float] = []
        for r in range(args.rounds):  # interleaved, the order swapped each round
            for ledger, out in ((bare, plain), (wrapped, timed))[:: 1 if r % 2 else -1]:
                out.append(pairs(ledger, args.pairs, f"r{r}"))
        on = statistics.median(hook_us(100_000) for _ in range(args.rounds))
        observed = [observe_us(m, 50_000) for _ in range(args.rounds)]
        listener = metrics.Listener(m, "127.0.0.1", 0)
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://{listener.address}/metrics", timeout=30) as resp:
            size = len(resp.read())
        scrape_ms = (time.perf_counter() - started) * 1000
        listener.close()
        metrics.disable()
        off = statistics.median(hook_us(100_000) for _ in range(args.rounds))
        bare.close()
        wrapped.close()
    p, t = statistics.median(plain), statistics.median(timed)
    print(json.dumps({
        "pair_us_bare": round(p, 1), "pair_us_instrumented": round(t, 1), "added_us_per_pair": round(t - p, 1),
        "commit_metrics_us": round(statistics.median(c for c, _ in observed), 2),
        "reserve_metrics_us": round(statistics.median(r for _, r in observed), 2),
        "hook_us_on": round(on, 3), "hook_us_off": round(off, 3),
        "scrape_ms": round(scrape_ms, 2), "scrape_bytes": size, "pools": args.pools,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
