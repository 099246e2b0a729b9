"""Background checkpoints: the meter's commits never checkpoint, and the WAL still reaches the
database file, a real SQLite file on disk."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.prices import rates

MODEL = "claude-sonnet-4-5-20250929"
PAIRS = 30  # some hundreds of WAL pages: below SQLite's own checkpoint threshold of 1,000


def _spend(ledger: Ledger) -> None:
    ledger.add_bottle(Bottle("b"))
    ledger.set_budget(Budget(Scope.of_bottle("b"), "anthropic", "tokens", 10**12))
    for i in range(PAIRS):
        ledger.reserve(
            ReserveRequest(f"k{i}", "b", "a", "anthropic", MODEL, 100, 100, rates("anthropic", MODEL))
        )
        ledger.commit(f"k{i}", UsageRecord("b", "a", "anthropic", MODEL, input_tokens=100, output_tokens=10))


def _size_within(path: Path, before: int, wait: float) -> int:
    """The database file's size once it differs from ``before``, or after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and path.stat().st_size == before:
        time.sleep(0.02)
    return path.stat().st_size


def test_the_wal_reaches_the_database_file_without_a_commit_checkpointing(tmp_path: Path) -> None:
    background, default = tmp_path / "background.db", tmp_path / "default.db"
    with Ledger.open(background) as ledger:
        ledger.checkpoint_in_background(interval=0.05)
        before = background.stat().st_size
        _spend(ledger)
        assert _size_within(background, before, 2.0) > before  # the thread copied the WAL in
        assert ledger.usage(limit=PAIRS + 1)[-1]["key"] == f"k{PAIRS - 1}"
    assert not [t for t in threading.enumerate() if t.name == "bbnet-checkpoint"]  # close stops it
    # the same writes with SQLite's own checkpoint: nothing reaches the file until the threshold
    with Ledger.open(default) as ledger:
        before = default.stat().st_size
        _spend(ledger)
        assert _size_within(default, before, 0.5) == before
    with Ledger.open(background, create=False) as reopened:
        assert len(reopened.usage(limit=PAIRS + 1)) == PAIRS
