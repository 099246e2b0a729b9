"""Which pools a call's path charges, remembered between calls while nothing else changes the ledger.

Every reserve and commit needs the pools of every budget on the call's path (global, the bottle's
ancestors, the bottle, its agent) in their current periods. Finding them takes the bottle's chain,
one query per level, and a join of budgets to pools with each period's start; the answer changes
only when a budget, a bottle or a period does. A :class:`Plan` is that answer without the counters
(pool ids, scopes, units, the budgets' limits, and the time window its periods share); the counters
(``used``, ``reserved``, a fleet slice) are read fresh in every transaction, by id.

A plan is valid until another connection commits anything (SQLite's ``PRAGMA data_version``, read
inside the write transaction, after its lock is taken), until this connection writes anything but
the hot path's reserves, commits and releases (a budget set, a bottle added), or until its window
ends. Pure: no SQL here; :mod:`bbnet.pool_ops` reads and writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bbnet.model import PoolView
from bbnet.pools import period_end

MAX_PLANS = 4096  # paths (bottle, agent, provider) remembered; all are forgotten when full


@dataclass(frozen=True)
class PlannedPool:
    """A pool on a path, without its counters."""

    id: int
    scope: str
    provider: str
    unit: str
    period: str
    period_start: float
    budget_limit: int


@dataclass(frozen=True)
class Counters:
    """A pool's counters as read in the transaction: ``slice_limit`` None unless a fleet pool."""

    used: int
    reserved: int
    slice_limit: int | None
    slice_open: bool


@dataclass(frozen=True)
class Plan:
    pools: tuple[PlannedPool, ...]  # root first, as the full query orders them
    start: float  # the latest of the pools' period starts
    end: float  # the earliest of their period ends (exclusive)

    def covers(self, now: float) -> bool:
        return self.start <= now < self.end

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(p.id for p in self.pools)


def plan(pools: Sequence[PlannedPool]) -> Plan:
    """The plan of these pools (root first): valid in the window all their periods share."""
    return Plan(
        tuple(pools),
        max((p.period_start for p in pools), default=-math.inf),
        min((period_end(p.period, p.period_start) for p in pools), default=math.inf),
    )


def views(plan: Plan, counters: Mapping[int, Counters]) -> list[tuple[int, PoolView]] | None:
    """The plan's pools with their counters, as the full query would return them; None when a
    pool is missing (it cannot be here without another write, but then the plan is not used)."""
    out: list[tuple[int, PoolView]] = []
    for p in plan.pools:
        c = counters.get(p.id)
        if c is None:
            return None
        fleet = c.slice_limit is not None
        limit = (
            c.slice_limit if c.slice_limit is not None and c.slice_limit < p.budget_limit else p.budget_limit
        )
        out.append(
            (
                p.id,
                PoolView(
                    p.scope,
                    p.provider,
                    p.unit,
                    p.period,
                    p.period_start,
                    limit,
                    c.used,
                    c.reserved,
                    fleet and c.slice_open,
                ),
            )
        )
    return out


PathKey = tuple[str, str | None, str]  # bottle, agent, provider


class Plans:
    """The plans of one connection, and the ``data_version`` they were made under."""

    def __init__(self) -> None:
        self._plans: dict[PathKey, Plan] = {}
        self._version: int | None = None
        self.generation = 0  # moves each time the plans are dropped: what was planned before may not stand

    def check(self, version: int | None) -> None:
        """Keep the plans if ``version`` is the one they were made under; None: keep none."""
        if version is None or version != self._version:
            self._plans.clear()
            self.generation += 1
        self._version = version

    def forget(self) -> None:
        self.check(None)

    @property
    def version(self) -> int | None:
        """The ``data_version`` the plans stand on; None: none read since the last forget."""
        return self._version

    def get(self, key: PathKey, now: float) -> Plan | None:
        plan = self._plans.get(key)
        return plan if plan is not None and plan.covers(now) else None

    def put(self, key: PathKey, plan: Plan) -> None:
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
