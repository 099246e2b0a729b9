"""Budgets and their pools: set, list, reserve, commit, release, sweep.

Pools are maintained counters (``used``, ``reserved``) per budget and period; the hot path never
scans usage. A new pool (a budget set mid-period) is seeded once from the usage already recorded in
its period, off the hot path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bbnet import pools as arith
from bbnet.model import (
    MICROS_PER_USD,
    PERIODS,
    UNITS,
    Budget,
    Commit,
    CommitResult,
    Outcome,
    PoolView,
    Release,
    ReserveRequest,
    ReserveResult,
    UsageRecord,
    Write,
    Written,
)
from bbnet.names import Scope
from bbnet.pool_ops import PoolOps
from bbnet.prices import cost_usd
from bbnet.providers import PROVIDER_KEYS
from bbnet.store import Conn, LedgerError, pool_from_row


def lost_usage(reservation: Mapping[str, Any]) -> UsageRecord:
    """What an expired reservation is billed as, at the time of the call: its input estimate and
    the output its stream had shown when the meter last renewed the lease (what it saw after that
    died with it). A reservation made before the estimate was kept apart (v3) bills its whole hold.
    """
    estimate = reservation["input_tokens"]
    return UsageRecord(
        bottle=reservation["bottle"],
        agent=reservation["agent"],
        provider=reservation["provider"],
        model=reservation["model"],
        input_tokens=reservation["tokens"] if estimate is None else estimate,
        output_tokens=reservation["output_seen"],
        estimated=True,
        lost=True,
        ts=reservation["created_at"],
        node=reservation["node"],
    )


def check_usage(usage: UsageRecord) -> None:
    for field in (
        "input_tokens",
        "output_tokens",
        "cache_write_tokens",
        "cache_read_tokens",
        "reasoning_tokens",
    ):
        if getattr(usage, field) < 0:
            raise LedgerError(f"invalid usage: {field} is negative")


class BudgetOps(PoolOps):
    # -- budgets -----------------------------------------------------------------------------

    def set_budget(self, budget: Budget, known_providers: Iterable[str] = PROVIDER_KEYS) -> None:
        """Create or replace the budget of (scope, provider, unit); seed its current pool."""
        if budget.unit not in UNITS:
            raise LedgerError(f"invalid unit {budget.unit!r}: expected tokens or usd")
        if budget.period not in PERIODS:
            raise LedgerError(f"invalid period {budget.period!r}: expected {', '.join(PERIODS)}")
        if budget.provider not in set(known_providers):
            raise LedgerError(
                f"unknown provider {budget.provider!r}: expected one of {', '.join(sorted(known_providers))}"
            )
        if not isinstance(budget.limit, int) or budget.limit < 0:
            raise LedgerError(f"invalid limit {budget.limit!r}: must be a whole number >= 0")
        scope = str(budget.scope)
        with self._tx() as c:
            if budget.scope.kind != "global":
                self._require_bottle(c, budget.scope.bottle)
            c.execute(
                "INSERT INTO budgets (scope, provider, unit, limit_amount, period, source, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, provider, unit) DO UPDATE SET"
                " limit_amount = excluded.limit_amount, period = excluded.period, source = excluded.source,"
                " updated_at = excluded.updated_at",
                (
                    scope,
                    budget.provider,
                    budget.unit,
                    budget.limit,
                    budget.period,
                    budget.source,
                    time.time(),
                ),
            )
            self._ensure_pool(c, scope, budget.provider, budget.unit, budget.period, time.time())

    def remove_budget(self, scope: Scope, provider: str, unit: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "DELETE FROM budgets WHERE scope = ? AND provider = ? AND unit = ?",
                (str(scope), provider, unit),
            )
            return cur.rowcount > 0

    def budgets(self) -> list[Budget]:
        return [
            Budget(
                Scope.parse(r["scope"]), r["provider"], r["unit"], r["limit_amount"], r["period"], r["source"]
            )
            for r in self._read("SELECT * FROM budgets ORDER BY scope, provider, unit")
        ]

    def pools(self, now: float | None = None) -> list[PoolView]:
        """Every budget's pool in its current period (created if the period just began).

        A plain read when every pool exists (the common case): readers such as the dashboard then
        never wait for, or hold, the write lock.
        """
        now = time.time() if now is None else now
        rows = self._read(*self._current_pools_query("1 = 1", now))
        if all(r["id"] is not None for r in rows):
            return [pool_from_row(r) for r in rows]
        with self._tx() as c:
            return [pool_from_row(r) for r in self._current_pools(c, "1 = 1", now)]

    def path_pools(
        self, bottle: str, agent: str | None, provider: str, now: float | None = None
    ) -> list[PoolView]:
        now = time.time() if now is None else now
        with self._tx() as c:
            return [pool for _, pool in self._on_path(c, bottle, agent, provider, now)]

    # -- the gate ----------------------------------------------------------------------------

    def reserve(self, req: ReserveRequest) -> ReserveResult:
        """Check every pool on the call's path and hold the projected amounts in all, or none."""
        with self._tx(hot=True) as c:
            return self._reserve(c, req, time.time())

    def _reserve(self, c: Conn, req: ReserveRequest, now: float) -> ReserveResult:
        """The reserve inside an open transaction (a LedgerError is raised before it writes)."""
        held = c.execute(
            "SELECT EXISTS (SELECT 1 FROM usage WHERE key = ?1) AS committed, r.tokens, r.usd_micros"
            " FROM (SELECT 1) AS one LEFT JOIN reservations r ON r.key = ?1",
            (req.key,),
        ).fetchone()
        if held["committed"]:
            raise LedgerError(f"call {req.key!r} is already committed")
        if held["tokens"] is not None:  # a retried reserve: the hold already stands
            return ReserveResult(
                Outcome.ALLOW,
                req.key,
                held["tokens"],
                held["usd_micros"],
                held["tokens"] - req.input_tokens,
            )
        path = self._on_path(c, req.bottle, req.agent, req.provider, now)
        decision = arith.decide(req, [pool for _, pool in path])
        if decision.outcome is Outcome.DENY:
            return ReserveResult(
                Outcome.DENY,
                req.key,
                governing=decision.governing,
                exhausted=decision.exhausted,
                needed=decision.needed,
            )
        holds: list[tuple[int, int]] = []
        for pool_id, pool in path:
            amount = decision.tokens if pool.unit == "tokens" else decision.usd_micros
            if amount:
                holds.append((pool_id, amount))
        self._move(c, {}, dict(holds))
        c.execute(
            "INSERT INTO reservations (key, bottle, agent, provider, model, tokens, usd_micros, pools,"
            " created_at, expires_at, input_tokens, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                req.key,
                req.bottle,
                req.agent,
                req.provider,
                req.model,
                decision.tokens,
                decision.usd_micros,
                json.dumps(holds),
                now,
                now + req.lease_seconds,
                req.input_tokens,
                self.node,
            ),
        )
        return ReserveResult(
            decision.outcome,
            req.key,
            decision.tokens,
            decision.usd_micros,
            decision.output_tokens,
            decision.governing,
        )

    def commit(self, key: str, usage: UsageRecord) -> CommitResult:
        """Record exactly one usage row for ``key`` and move its hold to used, in one transaction."""
        check_usage(usage)
        with self._tx(hot=True) as c:
            return self._record(c, key, usage)

    def write_batch(self, writes: Sequence[Write]) -> list[Written]:
        """Every write in one transaction, in order: a group commit (one COMMIT for them all).

        Each write is what :meth:`reserve`, :meth:`commit` or :meth:`release` would do alone; one
        that cannot be done (a :class:`LedgerError`: a call already committed, an unknown bottle)
        is rolled back to its savepoint and its error takes its place, the others stand. Put
        commits and releases before reserves: the room they free is then there for the reserves.
        The transaction itself failing (the ledger unreachable, the disk full) raises, and nothing
        of the batch is written."""
        now = time.time()
        with self._tx(hot=True) as c:
            return [self._write_one(c, w, now) for w in writes]

    def _write_one(self, c: Conn, write: Write, now: float) -> Written:
        c.execute("SAVEPOINT one_write")
        try:
            out: Written = self._apply(c, write, now)
        except LedgerError as e:
            c.execute("ROLLBACK TO one_write")
            self.plans.forget()  # one may name a pool the rollback took back
            out = e
        c.execute("RELEASE one_write")
        return out

    def _apply(self, c: Conn, write: Write, now: float) -> Written:
        if isinstance(write, ReserveRequest):
            return self._reserve(c, write, now)
        if isinstance(write, Commit):
            check_usage(write.usage)
            return self._record(c, write.key, write.usage)
        if isinstance(write, Release):
            return self._drop_hold(c, write.key)
        raise TypeError(f"{type(write).__name__} needs a ledger with stakes")  # bbnet.stakes.StakeOps

    def _record(
        self, c: Conn, key: str, usage: UsageRecord, held: Mapping[int, int] | None = None
    ) -> CommitResult:
        """The commit inside an open transaction: insert the row, move the hold to used. The hold
        is the call's reservation row's, or ``held`` (pool id -> amount) for a call without one
        (admitted from a stake: the caller takes it out of the stake)."""
        cost = cost_usd(usage.provider, usage.model, usage)
        micros = None if cost is None else round(cost * MICROS_PER_USD)
        ts = time.time() if usage.ts is None else usage.ts
        if held is None:
            found = c.execute(
                "SELECT EXISTS (SELECT 1 FROM usage WHERE key = ?1) AS committed, r.pools"
                " FROM (SELECT 1) AS one LEFT JOIN reservations r ON r.key = ?1",
                (key,),
            ).fetchone()
            committed, row_holds = found["committed"], found["pools"]
            holds: dict[int, int] = dict(json.loads(row_holds)) if row_holds else {}
        else:
            committed = c.execute("SELECT EXISTS (SELECT 1 FROM usage WHERE key = ?)", (key,)).fetchone()[0]
            row_holds, holds = None, dict(held)
        if committed:
            return CommitResult(False, key, cost)
        used: dict[int, int] = {}
        exhausted: list[PoolView] = []
        for pool_id, pool in self._on_path(c, usage.bottle, usage.agent, usage.provider, ts):
            used[pool_id] = amount = usage.tokens if pool.unit == "tokens" else (micros or 0)
            after = replace(pool, used=pool.used + amount, reserved=pool.reserved - holds.get(pool_id, 0))
            if after.exhausted:
                exhausted.append(after)
        # the hold moves to used in the same statement; one held in a pool no longer on the path
        # (a new period) is freed there
        self._move(c, used, {pool_id: -held for pool_id, held in holds.items()})
        if row_holds is not None:
            c.execute("DELETE FROM reservations WHERE key = ?", (key,))
        c.execute(
            "INSERT INTO usage (key, ts, bottle, agent, provider, family, model, host, path, input_tokens,"
            " output_tokens, cache_write_tokens, cache_read_tokens, reasoning_tokens, cost_usd, cost_micros,"
            " estimated, stream, status, latency_ms, lost, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                ts,
                usage.bottle,
                usage.agent,
                usage.provider,
                usage.family,
                usage.model,
                usage.host,
                usage.path,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_write_tokens,
                usage.cache_read_tokens,
                usage.reasoning_tokens,
                cost,
                micros,
                int(usage.estimated),
                int(usage.stream),
                usage.status,
                usage.latency_ms,
                int(usage.lost),
                usage.node or self.node,
            ),
        )
        return CommitResult(True, key, cost, tuple(exhausted))

    def release(self, key: str) -> bool:
        """Return a reservation's held amounts to its pools; False if there was none."""
        with self._tx(hot=True) as c:
            return self._drop_hold(c, key)

    def renew(self, seen: Mapping[str, int], lease_seconds: float, now: float | None = None) -> int:
        """Extend the leases of calls still in flight to ``lease_seconds`` from now, noting the output
        each call's stream has shown so far (``seen``: key -> output tokens); how many were held."""
        until = (time.time() if now is None else now) + lease_seconds
        with self._tx(hot=True) as c:
            return sum(
                c.execute(
                    "UPDATE reservations SET expires_at = ?, output_seen = CASE WHEN output_seen > ? THEN output_seen"
                    " ELSE ? END WHERE key = ?",
                    (until, max(out, 0), max(out, 0), key),
                ).rowcount
                for key, out in seen.items()
            )

    def sweep_expired(self, now: float | None = None) -> list[tuple[str, CommitResult]]:
        """Bill every reservation whose lease has expired as a *lost* call (a meter died mid-call).

        The call was forwarded and may have been billed upstream, so releasing the hold would
        under-count: each becomes one usage row (``estimated``, ``lost``) of the input estimate, and
        its pools move the hold to used in the same transaction. Idempotent on the flow key: a
        later commit for the same key finds the row and changes nothing. Returns (bottle, result)
        per expired lease.
        """
        now = time.time() if now is None else now
        with self._tx() as c:
            expired = c.execute("SELECT * FROM reservations WHERE expires_at <= ?", (now,)).fetchall()
            return [(r["bottle"], self._record(c, r["key"], lost_usage(r))) for r in expired]

    def reservations(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT * FROM reservations ORDER BY created_at")]

    def _drop_hold(self, c: Conn, key: str) -> bool:
        row = c.execute("SELECT pools FROM reservations WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False
        self._move(c, {}, {pool_id: -amount for pool_id, amount in json.loads(row["pools"])})
        c.execute("DELETE FROM reservations WHERE key = ?", (key,))
        return True

    def sync_budgets(self, budgets: list[Budget], source: str = "settings") -> dict[str, int]:
        """Make the budgets from ``source`` equal ``budgets``; budgets set from elsewhere are kept.

        A budget the CLI set wins over the same (scope, provider, unit) in the settings file.
        """
        wanted = {(str(b.scope), b.provider, b.unit): b for b in budgets}
        existing = {(str(b.scope), b.provider, b.unit): b for b in self.budgets()}
        changed = removed = 0
        for key, b in wanted.items():
            have = existing.get(key)
            if have is not None and have.source != source:
                continue
            if have != b:
                self.set_budget(b)
                changed += 1
        for key, b in existing.items():
            if b.source == source and key not in wanted:
                self.remove_budget(b.scope, b.provider, b.unit)
                removed += 1
        return {"changed": changed, "removed": removed}
