"""Meter stakes (bbnet/stakes.py, meter/stake.py): calls admitted in memory decide exactly as the
ledger would, never let a pool overshoot, see every change another connection makes, and a dead
meter's stake settles from its journal with one usage row per call it forwarded."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet import stake_journal
from bbnet.ledger import Ledger
from bbnet.model import (
    Admission,
    Bottle,
    Budget,
    Commit,
    CommitResult,
    Outcome,
    PoolView,
    ReserveRequest,
    StakeReserve,
    UsageRecord,
    Write,
)
from bbnet.names import Scope
from bbnet.stakes import HEADROOM_CALLS, SHARE, stake_targets
from meter.stake import Held, Stake

MODEL = "claude-sonnet-4-5-20250929"


def _req(key: str, inp: int = 100, out: int = 100) -> ReserveRequest:
    return ReserveRequest(key, "a", "agent1", "anthropic", MODEL, inp, out)


def _usage(inp: int, out: int) -> UsageRecord:
    return UsageRecord("a", "agent1", "anthropic", MODEL, input_tokens=inp, output_tokens=out)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as led:
        led.add_bottle(Bottle("p"))
        led.add_bottle(Bottle("a", parent="p"))
    return path


@pytest.fixture
def ledger(db: Path) -> Iterator[Ledger]:
    with Ledger.open(db) as led:
        yield led


def _decide(ledger: Ledger):  # type: ignore[no-untyped-def]
    def decide(w: StakeReserve) -> Admission:
        [out] = ledger.write_batch([w])
        if isinstance(out, Exception):
            raise out
        assert isinstance(out, Admission)
        return out

    return decide


def _commit(ledger: Ledger, key: str, held: Held | None, usage: UsageRecord) -> CommitResult:
    [out] = ledger.write_batch([Commit(key, usage, held.stake if held else None, held.holds if held else ())])
    assert isinstance(out, CommitResult)
    return out


def _pool(ledger: Ledger, scope: str) -> PoolView:
    return next(p for p in ledger.pools() if p.scope == scope)


def test_headroom_only_where_the_pool_keeps_share_times_it() -> None:
    want = 100 * HEADROOM_CALLS
    assert stake_targets({1: 100, 2: 100}, {1: SHARE * want, 2: SHARE * want - 1}) == {1: want, 2: 0}
    assert stake_targets({}, {3: 10**9}) == {3: 0}  # a pool the call holds nothing in keeps nothing


def test_a_stake_admits_in_memory_and_moves_holds_to_used(ledger: Ledger, tmp_path: Path) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 10**9))
    stake = Stake(ledger, tmp_path / "stakes", 300)
    first, held = stake.reserve(_req("k1"), _decide(ledger))
    assert first.outcome is Outcome.ALLOW and held is not None
    pool = _pool(ledger, "bottle:a")
    assert pool.reserved == 200 + 200 * HEADROOM_CALLS  # the call's hold and the stake's free room
    version = ledger.data_version()
    second, held2 = stake.reserve(_req("k2"), _decide(ledger))  # from the free room: no write
    assert second.outcome is Outcome.ALLOW and held2 == Held(stake.key, held.holds)
    assert ledger.data_version() == version and _pool(ledger, "bottle:a").reserved == pool.reserved
    assert [r["key"] for r in ledger.reservations()] == ["k1", "k2"]  # in flight, from the journal
    _commit(ledger, "k1", held, _usage(120, 30))
    stake.committed("k1")
    stake.released("k2", held2)
    after = _pool(ledger, "bottle:a")
    assert (after.used, after.reserved) == (150, 200 * HEADROOM_CALLS)
    assert sum(ledger.stake_holds(stake.key).values()) == 200 * HEADROOM_CALLS
    assert ledger.reservations() == []
    stake.close()
    assert _pool(ledger, "bottle:a").reserved == 0 and ledger.stakes() == []
    assert not (tmp_path / "stakes" / f"{stake.key}.journal").exists()


def test_near_the_limit_every_call_is_decided_by_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    """No free room is kept where the pool cannot spare SHARE times it: a DEGRADE and a DENY come
    out exactly as without a stake, and the pool never holds more than its calls."""
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000))
    stake = Stake(ledger, tmp_path / "stakes", 300)
    a, held_a = stake.reserve(_req("k1", 300, 300), _decide(ledger))
    assert a.outcome is Outcome.ALLOW and _pool(ledger, "bottle:a").reserved == 600
    b, _ = stake.reserve(_req("k2", 100, 500), _decide(ledger))
    assert b.outcome is Outcome.DEGRADE and b.allowed_output_tokens == 300
    c, held_c = stake.reserve(_req("k3", 100, 100), _decide(ledger))
    assert c.outcome is Outcome.DENY and held_c is None and c.governing is not None
    assert not c.exhausted  # in-flight holds, not real usage, fill the pool
    assert _pool(ledger, "bottle:a").reserved == 1000
    assert held_a is not None
    _commit(ledger, "k1", held_a, _usage(300, 10))
    d, _ = stake.reserve(_req("k4", 100, 100), _decide(ledger))  # the commit freed 290
    assert d.outcome is Outcome.ALLOW


def test_the_same_calls_decide_the_same_with_and_without_a_stake(tmp_path: Path) -> None:
    """A random run of reserves, commits and releases against two ledgers with the same budgets, one
    through a stake (refilled with the commits, as the meter's writes do) and one reserving each
    call: every outcome agrees, no pool ever holds more than its limit, and the counters end equal."""
    rng = random.Random(7)
    ledgers = []
    for name in ("exact", "staked"):
        led = Ledger.open(tmp_path / f"{name}.db")
        led.add_bottle(Bottle("p"))
        led.add_bottle(Bottle("a", parent="p"))
        led.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 400_000))
        led.set_budget(Budget(Scope.of_bottle("p"), "*", "tokens", 1_000_000, period="day"))
        ledgers.append(led)
    exact, staked = ledgers
    stake = Stake(staked, tmp_path / "stakes", 300)
    open_calls: list[tuple[ReserveRequest, int, Held | None]] = []
    asked = top_ups = reserves = 0
    decide_in_ledger = _decide(staked)

    def decide(w: StakeReserve) -> Admission:
        nonlocal asked
        asked += 1
        return decide_in_ledger(w)

    def settle(req: ReserveRequest, allowed: int, held: Held | None) -> None:
        nonlocal top_ups
        if rng.random() < 0.85:  # real usage within the hold, as the gate's estimate caps it
            usage = _usage(req.input_tokens, rng.randint(0, allowed))
            assert exact.commit(req.key, usage).recorded
            written: list[Write] = [
                Commit(req.key, usage, held.stake if held else None, held.holds if held else ())
            ]
            if (top_up := stake.top_up()) is not None:  # with the commit, as LedgerWrites.flush does
                written.append(top_up)
            out = staked.write_batch(written)
            assert isinstance(out[0], CommitResult) and out[0].recorded
            stake.committed(req.key)
            if top_up is not None:
                top_ups += 1
                stake.topped_up(out[1])
        else:
            assert exact.release(req.key)
            if held is not None:
                stake.released(req.key, held)

    for i in range(600):
        if open_calls and rng.random() < 0.45:
            settle(*open_calls.pop(rng.randrange(len(open_calls))))
            continue
        req = _req(f"k{i}", rng.randint(100, 3000), rng.randint(1, 4000))
        reserves += 1
        want = exact.reserve(req)
        got, held = stake.reserve(req, decide)
        assert (got.outcome, got.tokens, got.allowed_output_tokens) == (
            want.outcome, want.tokens, want.allowed_output_tokens), i  # fmt: skip
        if got.outcome is not Outcome.DENY:
            open_calls.append((req, got.allowed_output_tokens, held))
        for pool in staked.pools():
            assert pool.used + pool.reserved <= pool.limit, (i, pool)
    while open_calls:
        settle(*open_calls.pop())
    stake.close()
    assert [(p.scope, p.used, p.reserved) for p in staked.pools()] == [
        (p.scope, p.used, 0) for p in exact.pools()
    ]
    # both paths were taken: calls admitted in memory, and calls (near the limits) the ledger decided
    assert sum(p.used for p in exact.pools()) > 0 and 50 < asked < reserves - 20 and top_ups > 10, (
        asked,
        top_ups,
    )
    for led in ledgers:
        led.close()


def test_a_change_by_another_connection_holds_at_the_next_call(
    db: Path, ledger: Ledger, tmp_path: Path
) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 10**9))
    stake = Stake(ledger, tmp_path / "stakes", 300)
    stake.reserve(_req("k1"), _decide(ledger))
    with Ledger.open(db) as other:  # the CLI lowers the limit below what the stake holds free
        other.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 500))
    res, _ = stake.reserve(_req("k2", 100, 400), _decide(ledger))
    assert res.outcome is Outcome.DEGRADE and res.allowed_output_tokens == 200  # 500 - 200 held - 100
    pool = _pool(ledger, "bottle:a")
    assert pool.used + pool.reserved <= 500


def test_a_change_on_the_same_connection_holds_at_the_next_call(ledger: Ledger, tmp_path: Path) -> None:
    """`bbnet serve`'s own writes (a fleet slice, budgets from the settings) share the meter's
    connection: they do not move its data_version, they move its plans' generation."""
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 10**9))
    stake = Stake(ledger, tmp_path / "stakes", 300)
    stake.reserve(_req("k1"), _decide(ledger))
    ledger.set_budget(Budget(Scope.global_(), "*", "tokens", 150))  # a new pool on the path
    res, _ = stake.reserve(_req("k2", 100, 100), _decide(ledger))
    assert res.outcome is Outcome.DEGRADE and res.allowed_output_tokens == 50
    assert res.governing is not None and res.governing.scope == "global"


def _journal_holder(path: Path) -> subprocess.Popen[bytes]:
    """A process that opens the journal as a meter does and then waits to be killed."""
    code = (
        "import sys, time; from pathlib import Path; from bbnet.stake_journal import StakeJournal;"
        f"j = StakeJournal(Path({str(path)!r})); print('ready', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env={**os.environ})
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def test_a_killed_meters_stake_settles_from_its_journal(db: Path, ledger: Ledger, tmp_path: Path) -> None:
    """Calls admitted (in flight), committed, released; then the meter dies: the sweep, at once
    (the journal's lock is free), bills each call still open as lost, once, and frees the rest."""
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 10**9))
    stake = Stake(ledger, tmp_path / "stakes", 300)
    calls = {key: stake.reserve(_req(key, 100 + i, 50), _decide(ledger))[1] for i, key in enumerate("abcd")}
    _commit(ledger, "a", calls["a"], _usage(90, 40))
    stake.committed("a")
    _commit(ledger, "b", calls["b"], _usage(70, 10))  # its "c" line died with the meter
    held_c = calls["c"]
    assert held_c is not None
    stake.released("c", held_c)
    journal = stake.journal.path
    stake.journal.close()  # the meter is gone; another process holds its journal's lock till it dies
    holder = _journal_holder(journal)
    try:
        assert ledger.settle_dead_stakes() == [] and len(ledger.stakes()) == 1  # alive: left alone
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert stake_journal.owner_gone(journal)
    billed = ledger.sweep_expired()
    assert [(bottle, r.key) for bottle, r in billed] == [("a", "d")]
    rows = {r["key"]: r for r in ledger.usage()}
    assert set(rows) == {"a", "b", "d"}
    assert (rows["d"]["lost"], rows["d"]["input_tokens"], rows["d"]["output_tokens"]) == (1, 103, 0)
    pool = _pool(ledger, "bottle:a")
    assert (pool.used, pool.reserved) == (130 + 80 + 103, 0)
    assert ledger.stakes() == [] and not journal.exists()
    assert ledger.sweep_expired() == []  # once


def test_an_expired_stake_settles_even_while_its_journal_is_held(ledger: Ledger, tmp_path: Path) -> None:
    """A meter that stopped renewing (hung) loses its stake when the lease expires; its later
    commit still writes the call's one row, and takes nothing from the stake it no longer has."""
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 10**9))
    stake = Stake(ledger, tmp_path / "stakes", 300)
    _, held = stake.reserve(_req("k1"), _decide(ledger))
    assert held is not None
    billed = ledger.sweep_expired(now=time.time() + 301)
    assert [r.key for _, r in billed] == ["k1"]
    assert not _commit(ledger, "k1", held, _usage(10, 10)).recorded  # billed once, as lost
    assert _pool(ledger, "bottle:a").reserved == 0
    stake.renew()  # finds it gone: a new stake
    res, held2 = stake.reserve(_req("k2"), _decide(ledger))
    assert res.outcome is Outcome.ALLOW and held2 is not None and held2.stake == stake.key != held.stake
    stake.close()
