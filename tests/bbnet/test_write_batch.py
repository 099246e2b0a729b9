"""``Ledger.write_batch``: many writes in one transaction (the meter's group commit), on both backends,
and the WAL checkpoints taken off the writing connection (bbnet/checkpoint.py)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet.ledger import Ledger, LedgerError
from bbnet.model import (
    Bottle,
    Budget,
    Commit,
    CommitResult,
    Outcome,
    Release,
    ReserveRequest,
    ReserveResult,
    UsageRecord,
)
from bbnet.names import Scope

MODEL = "claude-sonnet-4-5-20250929"


def _req(key: str, inp: int = 100, out: int = 100, bottle: str = "a") -> ReserveRequest:
    return ReserveRequest(key, bottle, "agent1", "anthropic", MODEL, inp, out)


def _usage(inp: int = 100, out: int = 50, bottle: str = "a") -> UsageRecord:
    return UsageRecord(bottle, "agent1", "anthropic", MODEL, input_tokens=inp, output_tokens=out)


@pytest.fixture
def ledger(ledger_db: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_db) as led:
        led.add_bottle(Bottle("a"))
        led.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000))
        yield led


def test_a_batch_commits_releases_and_reserves_in_order(ledger: Ledger) -> None:
    ledger.reserve(_req("k1", inp=300, out=300))
    ledger.reserve(_req("k2", inp=100, out=200))
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (0, 900)
    # the commit and the release come first: the room they free is there for the reserve
    done = ledger.write_batch(
        [Commit("k1", _usage(inp=300, out=100)), Release("k2"), _req("k3", inp=100, out=500)]
    )
    assert isinstance(done[0], CommitResult) and done[0].recorded
    assert done[1] is True
    assert isinstance(done[2], ReserveResult) and done[2].outcome is Outcome.ALLOW and done[2].tokens == 600
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (400, 600)
    assert [r["key"] for r in ledger.usage()] == ["k1"]
    assert [r["key"] for r in ledger.reservations()] == ["k3"]


def test_a_refused_write_is_rolled_back_alone(ledger: Ledger) -> None:
    ledger.reserve(_req("k1"))
    ledger.commit("k1", _usage())
    ledger.reserve(_req("k2"))
    done = ledger.write_batch(
        [Commit("k2", _usage(inp=100, out=20)), _req("k1"), Commit("k4", _usage(bottle="nobody")), _req("k5")]
    )
    assert isinstance(done[0], CommitResult) and done[0].recorded
    assert isinstance(done[1], LedgerError) and "already committed" in str(done[1])
    assert isinstance(done[2], LedgerError) and "unknown bottle" in str(done[2])
    assert isinstance(done[3], ReserveResult) and done[3].outcome is Outcome.ALLOW
    assert sorted(r["key"] for r in ledger.usage()) == ["k1", "k2"]
    assert [r["key"] for r in ledger.reservations()] == ["k5"]
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (150 + 120, 200)


def test_a_batch_of_one_refused_changes_nothing(ledger: Ledger) -> None:
    before = (ledger.pools(), ledger.usage(), ledger.reservations())
    [refused] = ledger.write_batch([Commit("k1", _usage(inp=-1))])
    assert isinstance(refused, LedgerError) and str(refused) == "invalid usage: input_tokens is negative"
    [missing] = ledger.write_batch([Release("nothing held")])
    assert missing is False
    assert (ledger.pools(), ledger.usage(), ledger.reservations()) == before


def test_a_batch_keeps_a_deny_and_the_room_it_saw(ledger: Ledger) -> None:
    done = ledger.write_batch([_req("k1", inp=400, out=400), _req("k2", inp=400, out=400)])
    assert isinstance(done[0], ReserveResult) and done[0].outcome is Outcome.ALLOW
    # the second sees the first's hold, taken in the same transaction
    assert isinstance(done[1], ReserveResult) and done[1].outcome is Outcome.DENY and not done[1].exhausted
    [pool] = ledger.pools()
    assert pool.reserved == 800


def test_checkpoints_run_on_their_own_thread(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("a"))
        checkpoints = ledger.checkpoint_in_background()
        assert checkpoints is not None
        try:
            assert ledger._read("PRAGMA wal_autocheckpoint")[0][0] == 0  # its COMMITs never checkpoint
            for i in range(300):  # far past the 1000 pages at which a COMMIT would have checkpointed
                ledger.reserve(_req(f"k{i}", inp=1, out=1))
                ledger.commit(f"k{i}", _usage(inp=1, out=1))
        finally:
            checkpoints.stop()
        assert checkpoints.checkpoints >= 1
        # the last checkpoint copied every frame back into the database file
        probe = sqlite3.connect(db)
        busy, frames, copied = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        probe.close()
        assert busy == 0 and frames == copied
        assert os.path.getsize(db) > 0 and len(ledger.usage(limit=1000)) == 300


def test_no_checkpoint_thread_on_postgresql(pg_url: str) -> None:
    with Ledger.open(pg_url) as ledger:
        assert ledger.checkpoint_in_background() is None
