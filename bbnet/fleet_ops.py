"""The fleet database's side of fleet budgets: lease, settle, reclaim (the arithmetic is bbnet/fleet.py).

The fleet database is a bbnet ledger like any host's; these run on it. A grant is one conditional
``UPDATE pools … RETURNING`` (it fails, and is retried with a fresh read, if another node's grant got
there first) plus the lease row, in one transaction. A settlement writes the lease's new absolute
state only if it is still the one it read (compare-and-set), so a reclaim by another node and this
node's settlement never both apply to the same state. Shipping a host's usage rows (the batching is
bbnet/shipping.py) is one transaction per batch: the rows and the node's watermark together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bbnet import fleet, shipping
from bbnet import pools as arith
from bbnet.budgets import BudgetOps
from bbnet.model import PoolView
from bbnet.store import LedgerError

_ATTEMPTS = 50


@dataclass(frozen=True)
class PoolKey:
    """A pool as both sides name it: the ids differ between a host's ledger and the fleet's."""

    scope: str
    provider: str
    unit: str
    period: str
    period_start: float

    @property
    def budget(self) -> tuple[str, str, str]:
        return (self.scope, self.provider, self.unit)

    @classmethod
    def of(cls, pool: PoolView) -> PoolKey:
        return cls(pool.scope, pool.provider, pool.unit, pool.period, pool.period_start)


class _Raced(Exception):
    """Another node changed the row between our read and our write: roll back and read again."""


class FleetOps(BudgetOps):
    def _fleet_pool(self, c: Any, key: PoolKey, now: float) -> Any:
        """The fleet pool of ``key`` (created if its period is the current one); None without a budget."""
        if key.period_start == arith.period_start(key.period, now):
            self._current_pools(
                c, "b.scope = ? AND b.provider = ? AND b.unit = ?", now, (key.scope, key.provider, key.unit)
            )
        return c.execute(
            "SELECT p.id, b.limit_amount, p.used, p.reserved, p.fleet_short FROM pools p JOIN budgets b ON b.scope = p.scope"
            " AND b.provider = p.provider AND b.unit = p.unit AND b.period = p.period WHERE p.scope = ?"
            " AND p.provider = ? AND p.unit = ? AND p.period = ? AND p.period_start = ?",
            (key.scope, key.provider, key.unit, key.period, key.period_start),
        ).fetchone()

    @staticmethod
    def _view(key: PoolKey, row: Any) -> PoolView:
        return PoolView(key.scope, key.provider, key.unit, key.period, key.period_start,
                        row["limit_amount"], row["used"], row["reserved"])  # fmt: skip

    @staticmethod
    def _lease(c: Any, node: str, pool_id: int, now: float, lease_seconds: float) -> fleet.Lease:
        c.execute(
            "INSERT INTO fleet_leases (node, pool_id, granted, consumed, expires_at, updated_at)"
            " VALUES (?, ?, 0, 0, ?, ?) ON CONFLICT (node, pool_id) DO NOTHING",
            (node, pool_id, now + lease_seconds, now),
        )
        row = c.execute(
            "SELECT granted, consumed FROM fleet_leases WHERE node = ? AND pool_id = ?", (node, pool_id)
        ).fetchone()
        return fleet.Lease(row["granted"], row["consumed"])

    def _retrying(self, attempt: Any) -> Any:
        for _ in range(_ATTEMPTS):
            try:
                return attempt()
            except _Raced:
                continue
        raise LedgerError(f"fleet ledger {self.path}: lease row kept changing under {_ATTEMPTS} attempts")

    def fleet_grant(self, node: str, key: PoolKey, ask: int, lease_seconds: float,
                    now: float | None = None) -> tuple[int, PoolView | None]:  # fmt: skip
        """Lease up to ``ask`` more of ``key``'s pool to ``node``; returns (granted, the pool after).
        A grant short of its ask marks the pool short (:func:`bbnet.fleet.short`); a whole one clears it."""
        at = time.time() if now is None else now

        def attempt() -> tuple[int, PoolView | None]:
            with self._tx() as c:
                row = self._fleet_pool(c, key, at)
                if row is None:
                    return 0, None
                amount = fleet.grant_amount(ask, row["limit_amount"], row["used"], row["reserved"])
                self._lease(c, node, row["id"], at, lease_seconds)
                if amount > 0:
                    done = c.execute(
                        "UPDATE pools SET reserved = reserved + ? WHERE id = ? AND used + reserved + ? <= ?"
                        " RETURNING used, reserved",
                        (amount, row["id"], amount, row["limit_amount"]),
                    ).fetchone()
                    if done is None:
                        raise _Raced
                    row = {**dict(row), "used": done["used"], "reserved": done["reserved"]}
                c.execute(
                    "UPDATE fleet_leases SET granted = granted + ?, expires_at = ?, updated_at = ?"
                    " WHERE node = ? AND pool_id = ?",
                    (amount, at + lease_seconds, at, node, row["id"]),
                )
                if fleet.short(ask, amount) != bool(row["fleet_short"]):
                    c.execute(
                        "UPDATE pools SET fleet_short = ? WHERE id = ?",
                        (int(fleet.short(ask, amount)), row["id"]),
                    )
                return amount, self._view(key, row)

        result: tuple[int, PoolView | None] = self._retrying(attempt)
        return result

    def fleet_settle(self, node: str, key: PoolKey, local_used: int, keep: int, lease_seconds: float,
                     now: float | None = None) -> tuple[fleet.Settlement, PoolView, bool] | None:  # fmt: skip
        """Settle ``node``'s consumption of ``key`` (``local_used``: all of it this period), return
        what exceeds ``keep`` and renew the lease; returns the settlement, the pool after, and whether
        it is short. None when the fleet has no such budget."""
        at = time.time() if now is None else now

        def attempt() -> tuple[fleet.Settlement, PoolView, bool] | None:
            with self._tx() as c:
                row = self._fleet_pool(c, key, at)
                if row is None:
                    return None
                lease = self._lease(c, node, row["id"], at, lease_seconds)
                s = fleet.settle(lease, local_used, keep)
                self._write(c, node, row["id"], lease, s, at + lease_seconds, at)
                view = self._view(key, row)
                return s, PoolView(**{**view.__dict__, "used": view.used + s.used_delta,
                                      "reserved": view.reserved + s.reserved_delta}), bool(row["fleet_short"])  # fmt: skip

        result: tuple[fleet.Settlement, PoolView, bool] | None = self._retrying(attempt)
        return result

    @staticmethod
    def _write(c: Any, node: str, pool_id: int, old: fleet.Lease, s: fleet.Settlement, expires: float,
               now: float) -> None:  # fmt: skip
        changed = c.execute(
            "UPDATE fleet_leases SET granted = ?, consumed = ?, expires_at = ?, updated_at = ?"
            " WHERE node = ? AND pool_id = ? AND granted = ? AND consumed = ?",
            (s.lease.granted, s.lease.consumed, expires, now, node, pool_id, old.granted, old.consumed),
        ).rowcount
        if changed != 1:
            raise _Raced
        if s.used_delta or s.reserved_delta:
            c.execute(
                "UPDATE pools SET used = used + ?, reserved = reserved + ? WHERE id = ?",
                (s.used_delta, s.reserved_delta, pool_id),
            )

    def fleet_reclaim(self, now: float | None = None) -> list[tuple[str, int]]:
        """Give back the unconsumed grant of every expired lease (its node died or lost the fleet);
        returns (node, amount) per lease reclaimed. Any node may run it; each lease is reclaimed once."""
        at = time.time() if now is None else now
        with self._tx() as c:
            rows = c.execute(
                "SELECT node, pool_id, granted, consumed, expires_at FROM fleet_leases"
                " WHERE expires_at <= ? AND granted > consumed",
                (at,),
            ).fetchall()
            out = []
            for r in rows:
                lease = fleet.Lease(r["granted"], r["consumed"])
                s = fleet.reclaim(lease)
                try:
                    self._write(c, r["node"], r["pool_id"], lease, s, r["expires_at"], at)
                except _Raced:  # the node settled meanwhile (PostgreSQL): its lease is live again
                    continue
                out.append((r["node"], -s.reserved_delta))
            return out

    def fleet_leases(self) -> list[dict[str, Any]]:
        """Every lease with its pool's key: the per-node part of ``bbnet budget list``."""
        rows = self._read(
            "SELECT l.node, p.scope, p.provider, p.unit, p.period, p.period_start, l.granted, l.consumed,"
            " l.expires_at FROM fleet_leases l JOIN pools p ON p.id = l.pool_id"
            " ORDER BY p.scope, p.provider, p.unit, p.period_start, l.node"
        )
        return [dict(r) for r in rows]

    # -- usage shipped from the hosts, for fleet-wide reports --------------------------------------

    def fleet_shipped(self, node: str) -> int:
        """The last local usage id ``node`` has shipped here (0: none yet)."""
        rows = self._read("SELECT shipped_upto FROM fleet_nodes WHERE node = ?", (node,))
        return int(rows[0][0]) if rows else 0

    def fleet_ship(self, node: str, b: shipping.Batch, now: float | None = None) -> tuple[int, list[str]]:
        """Insert ``b``'s rows (a key already here is skipped) and move ``node``'s watermark to its
        ``upto``, in one transaction, if the watermark is still ``b.after``; returns the watermark after
        and the keys another node's rows already held (they stay in this host's ledger only). A
        watermark that moved meanwhile (another process under this node's name) writes nothing."""
        at = time.time() if now is None else now
        with self._tx() as c:
            row = c.execute("SELECT shipped_upto FROM fleet_nodes WHERE node = ?", (node,)).fetchone()
            current = 0 if row is None else int(row[0])
            if current != b.after:
                return current, []
            flat = [v for r in b.rows for v in r]
            inserted = {r[0] for r in c.execute(shipping.insert_sql(len(b.rows)), flat).fetchall()}
            skipped = [k for k in b.keys if k not in inserted]
            existing: dict[str, str | None] = {}
            if skipped:
                marks = ", ".join("?" * len(skipped))
                found = c.execute(f"SELECT key, node FROM usage WHERE key IN ({marks})", skipped).fetchall()
                existing = {r[0]: r[1] for r in found}
            c.execute(
                "INSERT INTO fleet_nodes (node, shipped_upto, shipped_at) VALUES (?, ?, ?)"
                " ON CONFLICT (node) DO UPDATE SET shipped_upto = excluded.shipped_upto,"
                " shipped_at = excluded.shipped_at",
                (node, b.upto, at),
            )
            return b.upto, shipping.collisions(b, existing)

    def fleet_nodes(self) -> list[dict[str, Any]]:
        """Every node that ships here, with its watermark and when it last shipped."""
        return [dict(r) for r in self._read("SELECT * FROM fleet_nodes ORDER BY node")]
