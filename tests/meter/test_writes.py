"""The meter's group commit (meter/writes.py) on a real event loop and a real SQLite ledger: the
commits and releases of one turn of the loop share one transaction, a reserve takes the queued ones
along, and a journalled commit the ledger refuses keeps its hold, to be billed as a lost call."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from bbnet import metrics
from bbnet.ledger import Ledger
from bbnet.model import (
    Admission,
    Bottle,
    Budget,
    CommitResult,
    Outcome,
    ReserveRequest,
    StakeReserve,
    UsageRecord,
)
from bbnet.names import Scope
from meter.journal import Pending
from meter.stake import Stake
from meter.writes import LedgerWrites

MODEL = "claude-sonnet-4-5-20250929"


@dataclass(frozen=True)
class Call:
    bottle: str


def _req(key: str, inp: int = 100, out: int = 100) -> ReserveRequest:
    return ReserveRequest(key, "a", "agent1", "anthropic", MODEL, inp, out)


def _usage(inp: int = 100, out: int = 50) -> UsageRecord:
    return UsageRecord("a", "agent1", "anthropic", MODEL, input_tokens=inp, output_tokens=out)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger.open(tmp_path / "ledger.db")
    led.add_bottle(Bottle("a"))
    led.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 2000))
    return led


def batches(m: metrics.Metrics) -> tuple[float, float]:
    """How many group commits ran, and how many writes they held in all."""
    count = m.registry.get_sample_value("bbnet_ledger_batch_writes_count") or 0.0
    return count, m.registry.get_sample_value("bbnet_ledger_batch_writes_sum") or 0.0


def test_one_turn_of_the_loop_is_one_transaction(ledger: Ledger) -> None:
    m = metrics.Metrics()
    metrics.instrument(ledger, m)
    committed: list[str] = []
    writes: LedgerWrites[Call] = LedgerWrites(
        ledger, lambda call, record, result: committed.append(result.key)
    )
    for i in range(6):
        ledger.reserve(_req(f"k{i}"))

    async def answers() -> None:
        for i in range(5):  # five answers sent in one turn of the loop
            writes.commit(f"k{i}", Call("a"), _usage())
        writes.release("k5", Call("a"), "client went away")
        assert len(writes) == 6 and not ledger.usage()  # written after this turn, not in it
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(answers())
    assert committed == [f"k{i}" for i in range(5)] and len(writes) == 0
    assert batches(m) == (1, 6)
    assert len(ledger.usage()) == 5 and not ledger.reservations()
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (750, 0)


def test_a_reserve_takes_the_queued_writes_along(ledger: Ledger) -> None:
    m = metrics.Metrics()
    metrics.instrument(ledger, m)
    writes: LedgerWrites[Call] = LedgerWrites(ledger, lambda call, record, result: None)
    ledger.reserve(_req("k1", inp=900, out=900))

    async def turn() -> Outcome:
        writes.commit("k1", Call("a"), _usage(inp=900, out=100))  # frees 800 of the 1800 held
        return writes.reserve(_req("k2", inp=100, out=900)).outcome  # needs 1000 of the 2000

    assert asyncio.run(turn()) is Outcome.ALLOW
    assert batches(m) == (1, 2)
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (1000, 1000)


def test_outside_an_event_loop_each_write_is_written_at_once(ledger: Ledger) -> None:
    writes: LedgerWrites[Call] = LedgerWrites(ledger, lambda call, record, result: None)
    ledger.reserve(_req("k1"))
    writes.commit("k1", Call("a"), _usage())
    assert [r["key"] for r in ledger.usage()] == ["k1"]


def test_a_journalled_commit_the_ledger_refuses_is_billed_as_lost(ledger: Ledger) -> None:
    results: list[CommitResult] = []
    writes: LedgerWrites[Call] = LedgerWrites(ledger, lambda call, record, result: results.append(result))
    ledger.reserve(_req("k1"))
    ledger.reserve(_req("k2"))
    writes.journal.add(Pending("k1", Call("a"), _usage(inp=-5)))  # can never be written
    writes.journal.add(Pending("k2", Call("a"), _usage()))
    assert writes.replay() == 2 and not writes.journal
    assert [r.key for r in results] == ["k2"]
    assert [r["key"] for r in ledger.usage()] == ["k2"]
    assert [r["key"] for r in ledger.reservations()] == ["k1"]  # forwarded, maybe billed: its hold stays
    [(bottle, lost)] = ledger.sweep_expired(now=time.time() + 3600)  # as the controller does once it expires
    assert (bottle, lost.key, lost.recorded) == ("a", "k1", True)
    assert sorted((r["key"], r["lost"]) for r in ledger.usage()) == [("k1", 1), ("k2", 0)]
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (150 + 100, 0)  # k1 billed at its input estimate


def test_the_stake_is_refilled_with_the_commits(tmp_path: Path) -> None:
    """A steady run through a stake: after the first call every call is admitted in memory, the
    free room being refilled in the commits' own transactions; a stake settled meanwhile (its lease
    expired) is replaced, and the pools end holding nothing."""
    led = Ledger.open(tmp_path / "ledger.db")
    led.add_bottle(Bottle("a"))
    led.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 10_000_000))
    m = metrics.Metrics()
    metrics.instrument(led, m)
    writes: LedgerWrites[Call] = LedgerWrites(led, lambda call, record, result: stake.committed(result.key))
    stake = Stake(led, tmp_path / "stakes", 300)
    writes.top_ups = stake
    asked: list[str] = []

    def admit(w: StakeReserve) -> Admission:
        asked.append(w.req.key)
        return writes.admit(w)

    async def calls(first: int, n: int) -> None:
        for i in range(first, first + n):
            _, held = stake.reserve(_req(f"k{i}", 1000, 1000), admit)
            assert held is not None
            writes.commit(f"k{i}", Call("a"), _usage(1000, 500), held.stake, held.holds)
            await asyncio.sleep(0)  # the answer has left: the commit (and any refill) is written

    asyncio.run(calls(0, 40))
    assert asked == ["k0"] and len(led.usage()) == 40
    [pool] = led.pools()
    assert pool.used == 40 * 1500 and pool.reserved == sum(stake.free.values()) > 0
    count, written = batches(m)
    assert written > count  # some commits carried a refill: more writes than transactions

    old = stake.key
    led.settle_stake(old)  # as the sweep does with an expired lease
    asyncio.run(calls(40, 10))
    assert stake.key != old and len(led.usage()) == 50
    stake.close()
    [pool] = led.pools()
    assert pool.reserved == 0 and pool.used == 50 * 1500
