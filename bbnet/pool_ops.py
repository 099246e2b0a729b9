"""Finding the pools a call counts in: each budget's pool in the current period (created when a
period begins, seeded from the usage already recorded in it), and the pools on a call's path, from
its plan (:mod:`bbnet.plans`) when that stands. Part of the ledger (:mod:`bbnet.budgets` uses it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bbnet import plans
from bbnet import pools as arith
from bbnet.model import PERIODS, PoolView
from bbnet.store import Conn, Store, pool_from_row

# p.id is NULL where the budget has no pool for the period yet; a fleet pool's limit here is the slices held
_POOL_COLUMNS = (
    "p.id, b.scope, b.provider, b.unit, b.period, p.period_start, CASE WHEN p.slice_limit IS NOT NULL"
    " AND p.slice_limit < b.limit_amount THEN p.slice_limit ELSE b.limit_amount END AS limit_amount,"
    " p.used, p.reserved, p.slice_limit IS NOT NULL AND p.slice_open = 1 AS slice_open,"
    " b.limit_amount AS budget_limit"
)


def _scope_holds(scope: str, chain: list[str], agent: str) -> bool:
    return scope in arith.path_scopes(chain, agent)


class PoolOps(Store):
    def _ensure_pool(self, c: Conn, scope: str, provider: str, unit: str, period: str, now: float) -> None:
        start = arith.period_start(period, now)
        created = c.execute(
            "INSERT INTO pools (scope, provider, unit, period, period_start) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (scope, provider, unit, period, start),
        ).fetchone()
        if created is not None:
            used = self._usage_in_period(c, scope, provider, unit, start, arith.period_end(period, start))
            if used:
                c.execute("UPDATE pools SET used = ? WHERE id = ?", (used, created[0]))
            c.execute(  # a fleet budget's new pool holds no slice until the fleet grants one
                "UPDATE pools SET slice_limit = 0 WHERE id = ? AND EXISTS (SELECT 1 FROM budgets WHERE"
                " scope = ? AND provider = ? AND unit = ? AND source = 'fleet')",
                (created[0], scope, provider, unit),
            )

    def _usage_in_period(
        self, c: Conn, scope: str, provider: str, unit: str, start: float, end: float
    ) -> int:
        """Seed for a new pool: usage already recorded in its period (a scan, never on the hot path)."""
        amount = "input_tokens + output_tokens" if unit == "tokens" else "coalesce(cost_micros, 0)"
        rows = c.execute(
            f"SELECT bottle, agent, provider, sum({amount}) AS n FROM usage WHERE ts >= ? AND ts < ?"
            # a row a host shipped to the fleet database is in the pool through that host's lease
            " AND NOT EXISTS (SELECT 1 FROM fleet_nodes f WHERE f.node = usage.node)"
            " GROUP BY bottle, agent, provider",
            (start, min(end, 1e18)),
        ).fetchall()
        total = 0
        chains: dict[str, list[str]] = {}
        for r in rows:
            if provider not in ("*", r["provider"]):
                continue
            chain = chains.setdefault(r["bottle"], self._chain(c, r["bottle"]))
            if _scope_holds(scope, chain, r["agent"]):
                total += r["n"]
        return total

    def _current_pools(self, c: Conn, where: str, now: float, args: tuple[object, ...] = ()) -> list[Any]:
        """Budgets matching ``where`` joined to their pool of the period containing ``now``.

        A budget whose current pool does not exist yet (a new period, a new budget) gets it created
        here, so the common case is a single query.
        """
        query, params = self._current_pools_query(where, now, args)
        rows = c.execute(query, params).fetchall()
        missing = [r for r in rows if r["id"] is None]
        if not missing:
            return rows
        for r in missing:
            self._ensure_pool(c, r["scope"], r["provider"], r["unit"], r["period"], now)
        return c.execute(query, params).fetchall()

    @staticmethod
    def _current_pools_query(
        where: str, now: float, args: tuple[object, ...] = ()
    ) -> tuple[str, tuple[object, ...]]:
        starts = tuple(arith.period_start(p, now) for p in PERIODS)
        query = (
            f"SELECT {_POOL_COLUMNS} FROM budgets b LEFT JOIN pools p ON p.scope = b.scope"
            " AND p.provider = b.provider AND p.unit = b.unit AND p.period = b.period"
            " AND p.period_start = CASE b.period WHEN ? THEN ? WHEN ? THEN ? WHEN ? THEN ? WHEN ? THEN ? END"
            f" WHERE {where} ORDER BY b.scope, b.provider, b.unit"
        )
        return query, (*(x for pair in zip(PERIODS, starts, strict=True) for x in pair), *args)

    def _path_pool_rows(
        self, c: Conn, chain: list[str], agent: str | None, provider: str, now: float
    ) -> list[Any]:
        """Current pools of every budget on the call's path, root first."""
        scopes = arith.path_scopes(chain, agent)
        marks = ",".join("?" * len(scopes))
        rows = self._current_pools(
            c, f"b.scope IN ({marks}) AND b.provider IN (?, '*')", now, (*scopes, provider)
        )
        order = {s: i for i, s in enumerate(scopes)}
        return sorted(rows, key=lambda r: (order[r["scope"]], r["provider"] == "*", r["unit"]))

    def _on_path(
        self, c: Conn, bottle: str, agent: str | None, provider: str, now: float
    ) -> list[tuple[int, PoolView]]:
        """The call's path: (pool id, pool) of every budget on it, root first. From the path's
        plan and its pools' counters when the plan stands (two statements fewer per level, no join),
        else found in full and planned."""
        key = (bottle, agent, provider)
        plan = self.plans.get(key, now)
        if plan is not None:
            pools = plans.views(plan, self._counters(c, plan.ids))
            if pools is not None:
                return pools
        rows = self._path_pool_rows(c, self._chain(c, bottle), agent, provider, now)
        found = [
            plans.PlannedPool(
                r["id"],
                r["scope"],
                r["provider"],
                r["unit"],
                r["period"],
                r["period_start"],
                r["budget_limit"],
            )
            for r in rows
        ]
        self.plans.put(key, plans.plan(found))
        return [(r["id"], pool_from_row(r)) for r in rows]

    @staticmethod
    def _counters(c: Conn, ids: Sequence[int]) -> dict[int, plans.Counters]:
        if not ids:
            return {}
        rows = c.execute(
            "SELECT id, used, reserved, slice_limit, slice_open FROM pools"
            f" WHERE id IN ({','.join('?' * len(ids))})",
            ids,
        ).fetchall()
        return {r[0]: plans.Counters(r[1], r[2], r[3], bool(r[4])) for r in rows}

    @staticmethod
    def _move(c: Conn, used: Mapping[int, int], reserved: Mapping[int, int]) -> None:
        """Add ``used`` and ``reserved`` (pool id -> amount, negative to take) to the pools' counters,
        in one statement."""
        sets: list[str] = []
        args: list[int] = []
        for column, amounts in (("used", used), ("reserved", reserved)):
            if any(amounts.values()):
                sets.append(f"{column} = {column} + CASE id{' WHEN ? THEN ?' * len(amounts)} ELSE 0 END")
                args.extend(x for pair in amounts.items() for x in pair)
        if sets:
            ids = sorted(set(used) | set(reserved))
            c.execute(
                f"UPDATE pools SET {', '.join(sets)} WHERE id IN ({','.join('?' * len(ids))})", (*args, *ids)
            )
