"""The ledger writes a call could not make while the ledger was unreachable, kept to replay.

A call forwarded before PostgreSQL went away still ends as exactly one usage row: its commit (or
release) waits here, in order, and is written once the ledger answers again. Replaying is
idempotent, so a write that did land before the connection broke is not counted twice: a commit is
keyed by the call's flow id (``usage.key`` is unique; a second commit records nothing) and a
release of a hold already gone does nothing. The journal is bounded: when it is full the oldest
entry is dropped (and logged); that call's reservation then expires and the controller bills it as
a lost call (the input estimate), so it is still counted once. While the ledger is down new calls
are refused (503 BUDGET_CONFIG) or forwarded unmetered (fail-open), so only the calls in flight at
the outage land here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bbnet.model import UsageRecord

LIMIT = 10_000


@dataclass(frozen=True)
class Pending[C]:
    key: str
    call: C  # what the meter needs when the write lands
    record: UsageRecord | None  # the usage to commit; None: release the hold
    why: str = ""  # a release's reason, for its log line
    stake: str | None = None  # a commit's hold is in this stake (bbnet/stakes.py), not a reservation row
    holds: tuple[tuple[int, int], ...] = ()  # ... and what it holds there


class Journal[C]:
    def __init__(self, limit: int = LIMIT) -> None:
        self._items: deque[Pending[C]] = deque()
        self.limit = limit

    def add(self, item: Pending[C]) -> Pending[C] | None:
        """Keep ``item``; returns the oldest entry if it had to be dropped to make room."""
        dropped = self._items.popleft() if len(self._items) >= self.limit else None
        self._items.append(item)
        return dropped

    def first(self) -> Pending[C] | None:
        return self._items[0] if self._items else None

    def done(self) -> None:
        """The first entry was written (or can never be): forget it."""
        self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
