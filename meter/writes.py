"""The meter's ledger writes: a group commit on the event loop, and a journal for an unreachable ledger.

A call's commit or release is decided in its hook; it is queued here and written just after the
answer has left, on the next turn of the event loop, in one transaction with every other write
queued by then (``Ledger.write_batch``). A reserve that finds writes queued takes them into its own
transaction, ahead of itself, so the room a commit frees is there for it. Under load one turn of
the loop finishes several calls and they share one COMMIT, where each used to have its own (and
each reserve a second); an idle meter writes each call's commit alone, when it always did.

kill -9: a write still queued dies with the process. Its reservation stays in the ledger, and when
its lease expires the controller bills it as a lost call (``bbnet.budgets.lost_usage``), so every
call still ends as exactly one usage row. The window is what it was with one transaction per
write: the rest of the loop's turn in which the answer was sent.

The ledger unreachable (PostgreSQL down) mid-call: the commits and releases wait in the
:class:`meter.journal.Journal` and are replayed, in order, once it answers (idempotent on the
flow key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from bbnet.ledger import Ledger, LedgerError, LedgerUnreachable
from bbnet.model import (
    Admission,
    Commit,
    CommitResult,
    Release,
    ReserveRequest,
    ReserveResult,
    StakeReserve,
    StakeTopUp,
    UsageRecord,
    Write,
    Written,
)
from meter import errors
from meter.journal import Journal, Pending

log = logging.getLogger("bbnet.meter")


class Owned(Protocol):
    @property
    def bottle(self) -> str: ...


class TopUps(Protocol):
    """The meter's stake (meter/stake.py), whose free room is refilled with the commits."""

    def top_up(self) -> StakeTopUp | None: ...

    def topped_up(self, out: Written) -> None: ...


class LedgerWrites[C: Owned]:
    """The queue of one meter's commits and releases, and the journal of those the ledger could
    not take; ``on_commit`` is called once a commit is written."""

    def __init__(self, ledger: Ledger, on_commit: Callable[[C, UsageRecord, CommitResult], None]) -> None:
        self.ledger = ledger
        self.on_commit = on_commit
        self.journal: Journal[C] = Journal()
        self._queue: list[Pending[C]] = []
        self._flush_due = False
        self.top_ups: TopUps | None = None

    def __len__(self) -> int:
        """Writes queued, not written yet."""
        return len(self._queue)

    # -- queueing ----------------------------------------------------------------------------

    def commit(
        self,
        key: str,
        call: C,
        record: UsageRecord,
        stake: str | None = None,
        holds: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self._add(Pending(key, call, record, stake=stake, holds=holds))

    def release(self, key: str, call: C, why: str) -> None:
        self._add(Pending(key, call, None, why))

    def _add(self, item: Pending[C]) -> None:
        self._queue.append(item)
        if not self._flush_due:
            self._flush_due = True
            after_answer(self.flush)

    # -- writing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what is queued, in one transaction (with the stake's top-up, if it wants one)."""
        self._flush_due = False
        items, self._queue = self._queue, []
        if not items:
            return
        top_up = self.top_ups.top_up() if self.top_ups is not None else None
        if top_up is None or self.top_ups is None:
            self._write(items, None)
            return
        try:
            out = self._write(items, top_up)
        except LedgerError as e:
            out = e
        assert out is not None  # a write given is answered or raises
        self.top_ups.topped_up(out)

    def reserve(self, req: ReserveRequest) -> ReserveResult:
        """``Ledger.reserve``, in one transaction with the writes queued (written first)."""
        out = self._decide(req)
        assert isinstance(out, ReserveResult)
        return out

    def admit(self, req: StakeReserve) -> Admission:
        """A reserve against the meter's stake, in one transaction with the writes queued."""
        out = self._decide(req)
        assert isinstance(out, Admission)
        return out

    def _decide(self, req: ReserveRequest | StakeReserve | StakeTopUp) -> Written:
        items, self._queue = self._queue, []
        if not items and isinstance(req, ReserveRequest):
            return self.ledger.reserve(req)  # a fleet host's ledger tops its slice up there
        if not items:
            return self._alone(req)
        decided = self._write(items, req)
        assert decided is not None
        return decided

    def _write(
        self, items: list[Pending[C]], req: ReserveRequest | StakeReserve | StakeTopUp | None
    ) -> Written | None:
        writes: list[Write] = [
            Release(p.key) if p.record is None else Commit(p.key, p.record, p.stake, p.holds) for p in items
        ]
        try:
            results = self.ledger.write_batch([*writes, req] if req is not None else writes)
        except LedgerUnreachable as e:
            for item in items:
                self._keep(item, e)
            if req is not None:
                raise
            return None
        except LedgerError as e:  # the transaction failed whole: each write on its own, as it would have been
            log.error("a batch of %d ledger writes failed (%s): writing each alone", len(writes),
                      errors.redact(str(e)))  # fmt: skip
            for item in items:
                self._write_alone(item)
            return self._decide(req) if req is not None else None
        for item, result in zip(items, results, strict=False):
            self._settle(item, result)
        if req is None:
            return None
        reserved = results[-1]
        if isinstance(reserved, Exception):
            raise reserved
        return reserved

    def _direct(self, item: Pending[C]) -> CommitResult | bool:
        """The write in a transaction of its own."""
        if item.record is None:
            return self.ledger.release(item.key)
        if item.stake is None:
            return self.ledger.commit(item.key, item.record)
        out = self._alone(Commit(item.key, item.record, item.stake, item.holds))
        assert isinstance(out, CommitResult)
        return out

    def _alone(self, write: Write) -> Written:
        """One write in a transaction of its own; the error it got raised."""
        [out] = self.ledger.write_batch([write])
        if isinstance(out, Exception):
            raise out
        return out

    def _write_alone(self, item: Pending[C]) -> None:
        try:
            result: Written = self._direct(item)
        except LedgerUnreachable as e:
            self._keep(item, e)
            return
        except LedgerError as e:
            result = e
        self._settle(item, result)

    def _settle(self, item: Pending[C], result: Written) -> None:
        """What a write's result means: the commit callback, or a log line. A commit the ledger
        refuses keeps its hold: the call was forwarded and may have been billed, so its lease is
        left to expire and be billed as a lost call (still one usage row, never none)."""
        if item.record is None:
            if isinstance(result, Exception):
                log.error("release failed for %s: %s (the lease expires on its own)", item.key,
                          errors.redact(str(result)))  # fmt: skip
            else:
                log.info("release bottle=%s key=%s: %s", item.call.bottle, item.key, errors.redact(item.why))
        elif isinstance(result, Exception):
            log.error("commit refused for %s (bottle %s): %s; its hold stays, billed as a lost call when its"
                      " lease expires", item.key, item.call.bottle, errors.redact(str(result)))  # fmt: skip
        else:
            assert isinstance(result, CommitResult)
            self.on_commit(item.call, item.record, result)

    # -- the ledger unreachable mid-call -------------------------------------------------------

    def _keep(self, item: Pending[C], e: LedgerError) -> None:
        what = "commit" if item.record is not None else "release"
        log.warning("%s of %s (bottle %s) waits for the ledger: %s", what, item.key, item.call.bottle,
                    errors.redact(str(e)))  # fmt: skip
        dropped = self.journal.add(item)
        if dropped is not None:
            log.error("ledger journal full (%d): dropped the %s of %s; its lease expires and is billed as lost",
                      self.journal.limit, "commit" if dropped.record else "release", dropped.key)  # fmt: skip

    def replay(self) -> int:
        """Write the journal's entries until the ledger fails again; how many were written (one the
        ledger answers and refuses, as retrying will not help, counts as written)."""
        written = 0
        while (item := self.journal.first()) is not None:
            try:
                result: Written = self._direct(item)
            except LedgerUnreachable:
                break
            except LedgerError as e:
                result = e
            self.journal.done()
            self._settle(item, result)
            written += 1
        if written:
            log.info("ledger back: %d journalled writes replayed, %d waiting", written, len(self.journal))
        return written


def after_answer(write: Callable[..., None], *args: object) -> None:
    """Run a ledger write just after the current hook: mitmproxy sends a non-streamed answer as soon
    as the ``response`` hook returns, without yielding to the event loop first, so the client is
    not kept waiting for the write. Outside an event loop (hooks called by scripts) it runs now."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        write(*args)
        return
    loop.call_soon(write, *args)
