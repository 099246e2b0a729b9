"""Real concurrency: 8 OS processes hammer one ledger against a small budget, on both backends.

On PostgreSQL this is what the advisory write lock is for: without it, two processes reading a
pool's counters at once under READ COMMITTED would both admit calls into the same room."""

from __future__ import annotations

import multiprocessing as mp

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, Outcome, ReserveRequest, UsageRecord
from bbnet.names import Scope

LIMIT = 40_000
WORKERS = 8
CALLS = 60


def _worker(db: str, worker: int, out: mp.Queue) -> None:
    committed: list[str] = []
    errors: list[str] = []
    try:
        with Ledger.open(db) as ledger:
            for i in range(CALLS):
                key = f"w{worker}-{i}"
                req = ReserveRequest(key, "a", f"agent{worker}", "anthropic", "m", 100, 200)
                res = ledger.reserve(req)
                if res.outcome is Outcome.DENY:
                    continue
                usage = UsageRecord(
                    "a",
                    f"agent{worker}",
                    "anthropic",
                    "m",
                    input_tokens=100,
                    output_tokens=res.allowed_output_tokens,
                )
                if ledger.commit(key, usage).recorded:
                    committed.append(key)
    except Exception as e:  # reported to the parent, which fails the test
        errors.append(repr(e))
    out.put((committed, errors))


def test_eight_processes_never_overshoot(ledger_db: str) -> None:
    db = ledger_db
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("a"))
        ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", LIMIT))
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(db), w, queue)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    errors = [e for _, errs in results for e in errs]
    assert errors == []  # no "database is locked" (or anything else) escaped
    committed = sorted(k for keys, _ in results for k in keys)
    with Ledger.open(db) as ledger:
        rows = ledger.usage(limit=100_000)
        [pool] = ledger.pools()
        assert ledger.reservations() == []
    assert sorted(r["key"] for r in rows) == committed  # every commit is exactly one row
    admitted = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    assert admitted <= LIMIT
    assert admitted >= LIMIT - 300  # the budget was really contended, and filled
    assert (pool.used, pool.reserved) == (admitted, 0)
    assert len(committed) < WORKERS * CALLS  # some calls were refused
