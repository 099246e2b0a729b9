"""The paths' plans (bbnet/plans.py): the meter's reserves and commits skip finding a call's pools
while nothing else has changed the ledger, and see every change made by anyone the moment it lands,
on both backends."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet import plans
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Bottle, Budget, Commit, CommitResult, Outcome, PoolView, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.pools import period_start

MODEL = "claude-sonnet-4-5-20250929"
DAY = 86_400.0


def _req(key: str, inp: int = 100, out: int = 100) -> ReserveRequest:
    return ReserveRequest(key, "a", "agent1", "anthropic", MODEL, inp, out)


def _usage(inp: int = 100, out: int = 50, ts: float | None = None) -> UsageRecord:
    return UsageRecord("a", "agent1", "anthropic", MODEL, input_tokens=inp, output_tokens=out, ts=ts)


@pytest.fixture
def ledger(ledger_db: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_db) as led:
        yield _with_budgets(led)


def _with_budgets(led: Ledger) -> Ledger:
    """Bottle a (agent agent1) under p: a's anthropic tokens in total, p's tokens per day."""
    led.add_bottle(Bottle("p"))
    led.add_bottle(Bottle("a", parent="p"))
    led.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000))
    led.set_budget(Budget(Scope.of_bottle("p"), "*", "tokens", 5000, period="day"))
    return led


@pytest.fixture
def other(ledger_db: str, ledger: Ledger) -> Iterator[Ledger]:
    """A second connection to the same ledger: the CLI, `bbnet serve`, another meter."""
    with Ledger.open(ledger_db) as led:
        yield led


def test_a_limit_changed_by_another_connection_holds_at_once(ledger: Ledger, other: Ledger) -> None:
    assert ledger.reserve(_req("k1", inp=100, out=100)).outcome is Outcome.ALLOW  # planned
    other.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 350))
    res = ledger.reserve(_req("k2", inp=100, out=100))  # 150 of 350 left
    assert res.outcome is Outcome.DEGRADE and res.allowed_output_tokens == 50
    other.remove_budget(Scope.of_bottle("a"), "anthropic", "tokens")
    assert ledger.reserve(_req("k3", inp=100, out=100)).outcome is Outcome.ALLOW


def test_a_budget_added_by_another_connection_joins_the_path(ledger: Ledger, other: Ledger) -> None:
    ledger.reserve(_req("k1"))
    other.set_budget(Budget(Scope.global_(), "*", "tokens", 150))
    res = ledger.reserve(_req("k2", inp=100, out=100))
    assert res.outcome is Outcome.DEGRADE and res.governing is not None and res.governing.scope == "global"
    [commit] = ledger.write_batch([Commit("k1", _usage(inp=100, out=50))])
    assert isinstance(commit, CommitResult) and commit.recorded
    pools = {p.scope: p for p in other.pools()}
    # a pool made after k1's reserve was not held by it, and takes its usage all the same
    assert (pools["global"].used, pools["global"].reserved) == (150, 150)
    assert (pools["bottle:a"].used, pools["bottle:a"].reserved) == (150, 150)


def test_own_budget_writes_forget_the_plans(ledger: Ledger) -> None:
    ledger.reserve(_req("k1", inp=100, out=100))
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 250))
    assert ledger.reserve(_req("k2", inp=100, out=100)).outcome is Outcome.DENY  # 50 of 250 left


def test_a_slice_the_fleet_sets_from_another_connection_holds_at_once(ledger: Ledger, other: Ledger) -> None:
    ledger.reserve(_req("k1", inp=100, out=100))
    [hold] = [r for r in other.reservations() if r["key"] == "k1"]
    pool_ids = [pool_id for pool_id, _ in json.loads(hold["pools"])]
    bottle_pool = min(pool_ids)  # bottle:a's, the first budget set
    other.set_slice(bottle_pool, 350, False)  # 150 left in it
    res = ledger.reserve(_req("k2", inp=100, out=100))
    assert res.outcome is Outcome.DEGRADE and res.allowed_output_tokens == 50
    other.set_slice(bottle_pool, 200, True)  # none left, but the fleet can top it up
    res = ledger.reserve(_req("k3", inp=100, out=100))
    assert res.outcome is Outcome.DENY and not res.exhausted


def test_the_hot_path_skips_finding_the_pools_once_planned(tmp_path: Path) -> None:
    """SQLite (PostgreSQL keeps a plan for one transaction: its probe moves on its own writes)."""
    ledger = _with_budgets(Ledger.open(tmp_path / "ledger.db"))
    seen: list[str] = []
    ledger.reserve(_req("k1"))
    ledger._conn.set_trace_callback(seen.append)
    ledger.reserve(_req("k2"))
    ledger.write_batch([Commit("k1", _usage()), Commit("k2", _usage())])
    ledger._conn.set_trace_callback(None)
    assert not [s for s in seen if "FROM bottles" in s or "FROM budgets" in s]
    assert sum("FROM pools" in s for s in seen) == 3  # each write reads its pools' counters, by id
    pools = {p.scope: p for p in ledger.pools()}
    assert (pools["bottle:a"].used, pools["bottle:a"].reserved) == (300, 0)
    assert (pools["bottle:p"].used, pools["bottle:p"].reserved) == (300, 0)


def test_a_commit_in_the_next_period_lands_in_its_pools(ledger: Ledger, other: Ledger) -> None:
    ledger.reserve(_req("k1", inp=100, out=100))  # planned for today's day pool
    tomorrow = period_start("day", time.time()) + DAY + 60
    [commit] = ledger.write_batch([Commit("k1", _usage(inp=100, out=50, ts=tomorrow))])
    assert isinstance(commit, CommitResult) and commit.recorded
    today = {p.scope: p for p in other.pools()}
    assert (today["bottle:p"].used, today["bottle:p"].reserved) == (0, 0)  # its hold freed
    nextday = {p.scope: p for p in other.pools(now=tomorrow)}
    assert nextday["bottle:p"].used == 150
    ledger.reserve(_req("k2", inp=800, out=0))  # today again
    assert {p.scope: p.reserved for p in other.pools()}["bottle:p"] == 800
    assert {p.scope: p.reserved for p in other.pools(now=tomorrow)}["bottle:p"] == 0


def test_a_failed_transaction_forgets_the_plans(tmp_path: Path) -> None:
    with _with_budgets(Ledger.open(tmp_path / "ledger.db")) as led:
        led.reserve(_req("k1"))
        assert led.plans.get(("a", "agent1", "anthropic"), time.time()) is not None
        led._conn.execute(
            "CREATE TEMP TRIGGER fail BEFORE INSERT ON usage BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        with pytest.raises(sqlite3.IntegrityError):
            led.write_batch([Commit("k1", _usage())])
        assert led.plans.get(("a", "agent1", "anthropic"), time.time()) is None


# -- the pure part ---------------------------------------------------------------------------------


def _planned(pool_id: int, period: str, start: float, limit: int = 100) -> plans.PlannedPool:
    return plans.PlannedPool(pool_id, f"bottle:b{pool_id}", "*", "tokens", period, start, limit)


def test_a_plan_covers_the_window_its_periods_share() -> None:
    monday = period_start("week", 1_700_000_000.0)
    p = plans.plan([_planned(1, "total", 0.0), _planned(2, "week", monday), _planned(3, "day", monday + DAY)])
    assert (p.start, p.end) == (monday + DAY, monday + 2 * DAY)
    assert p.covers(monday + DAY) and not p.covers(monday + 2 * DAY) and not p.covers(monday)
    empty = plans.plan([])
    assert (empty.start, empty.end) == (-math.inf, math.inf)


def test_views_take_the_fleet_slice_when_it_is_lower() -> None:
    p = plans.plan([_planned(1, "total", 0.0, limit=100), _planned(2, "total", 0.0, limit=100)])
    counters = {1: plans.Counters(10, 5, 40, True), 2: plans.Counters(1, 2, None, True)}
    assert plans.views(p, counters) == [
        (1, PoolView("bottle:b1", "*", "tokens", "total", 0.0, 40, 10, 5, True)),
        (2, PoolView("bottle:b2", "*", "tokens", "total", 0.0, 100, 1, 2, False)),
    ]
    assert plans.views(p, {1: counters[1]}) is None  # a pool gone: not planned


def test_plans_are_kept_only_under_the_version_they_were_made_in() -> None:
    kept = plans.Plans()
    kept.check(7)
    kept.put(("a", None, "openai"), plans.plan([]))
    kept.check(7)
    assert kept.get(("a", None, "openai"), 0.0) is not None
    kept.check(8)
    assert kept.get(("a", None, "openai"), 0.0) is None


def test_a_write_rolled_back_in_a_batch_forgets_the_plans(tmp_path: Path) -> None:
    with _with_budgets(Ledger.open(tmp_path / "ledger.db")) as led:
        led.reserve(_req("k1"))
        [refused] = led.write_batch([ReserveRequest("k2", "nobody", "agent1", "anthropic", MODEL, 1, 1)])
        assert isinstance(refused, LedgerError)
        assert led.plans.get(("a", "agent1", "anthropic"), time.time()) is None
