"""A host's side of fleet budgets: its global pools mirror the fleet's budgets, capped by the slices
it holds (``pools.slice_limit``), which the lease manager (bbnet/fleet_lease.py) grows and shrinks.

The per-call path is unchanged: ``reserve`` sees a fleet pool whose limit is the slice, so a call is
admitted only within what the fleet granted this host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bbnet import pools as arith
from bbnet.budgets import BudgetOps
from bbnet.fleet_ops import PoolKey
from bbnet.model import Budget

FLEET_SOURCE = "fleet"


@dataclass(frozen=True)
class LocalSlice:
    pool_id: int
    key: PoolKey
    limit: int  # the slices held: this pool's local limit
    used: int
    reserved: int

    @property
    def remaining(self) -> int:
        return self.limit - self.used - self.reserved


class SliceOps(BudgetOps):
    def mirror_fleet_budgets(self, budgets: list[Budget], now: float | None = None) -> dict[str, int]:
        """Make the host's fleet budgets equal the fleet's global ones (``budgets``); the settings'
        global budgets are the fleet's now, so the host's copies of them go. A budget the CLI set on
        this host stays a local one."""
        at = time.time() if now is None else now
        removed = self.sync_budgets([], source="settings")["removed"]
        result = self.sync_budgets([Budget(b.scope, b.provider, b.unit, b.limit, b.period, FLEET_SOURCE)
                                    for b in budgets], source=FLEET_SOURCE)  # fmt: skip
        with self._tx() as c:  # a pool that predates its budget being a fleet one holds no slice yet
            for b in self.budgets():
                if b.source == FLEET_SOURCE:
                    c.execute(
                        "UPDATE pools SET slice_limit = 0 WHERE slice_limit IS NULL AND scope = ? AND"
                        " provider = ? AND unit = ? AND period = ? AND period_start = ?",
                        (str(b.scope), b.provider, b.unit, b.period, arith.period_start(b.period, at)),
                    )
        return {"changed": result["changed"], "removed": result["removed"] + removed}

    def slices(self, now: float | None = None) -> list[LocalSlice]:
        """Every fleet pool of this host (current periods first created), its slice and counters."""
        self.pools(now)
        rows = self._read(
            "SELECT id, scope, provider, unit, period, period_start, slice_limit, used, reserved FROM pools"
            " WHERE slice_limit IS NOT NULL ORDER BY period_start, scope, provider, unit"
        )
        return [LocalSlice(r["id"], PoolKey(r["scope"], r["provider"], r["unit"], r["period"], r["period_start"]),
                           r["slice_limit"], r["used"], r["reserved"]) for r in rows]  # fmt: skip

    def grow_slice(self, pool_id: int, amount: int, open_: bool) -> None:
        """Add a grant to the slice (and note whether the fleet has room beyond it)."""
        with self._tx() as c:
            c.execute(
                "UPDATE pools SET slice_limit = slice_limit + ?, slice_open = ? WHERE id = ?",
                (amount, int(open_), pool_id),
            )

    def shrink_slice(self, pool_id: int, keep: int) -> LocalSlice | None:
        """Lower the slice to ``keep``, never below what local reservations and usage hold (so no
        call admitted here loses its room); returns the slice after. Done before the fleet hears of
        it, so nothing is returned that a local call could still take."""
        with self._tx() as c:
            r = c.execute(
                "SELECT * FROM pools WHERE id = ? AND slice_limit IS NOT NULL", (pool_id,)
            ).fetchone()
            if r is None:
                return None
            limit = min(r["slice_limit"], max(keep, r["used"] + r["reserved"]))
            c.execute("UPDATE pools SET slice_limit = ? WHERE id = ?", (limit, pool_id))
            key = PoolKey(r["scope"], r["provider"], r["unit"], r["period"], r["period_start"])
            return LocalSlice(pool_id, key, limit, r["used"], r["reserved"])

    def set_slice(self, pool_id: int, limit: int, open_: bool) -> None:
        """The slice the fleet settled on (it may be less than asked: the lease was reclaimed)."""
        with self._tx() as c:
            c.execute(
                "UPDATE pools SET slice_limit = ?, slice_open = ? WHERE id = ?", (limit, int(open_), pool_id)
            )
