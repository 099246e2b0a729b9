"""This meter's stake (:mod:`bbnet.stakes`): calls admitted in memory, within room the ledger holds for it.

The ledger holds the stake (counted in the pools' ``reserved``); this side counts its *free* part,
the room no call of this meter holds, per pool. A call whose path is known and stands (the
ledger's ``data_version`` and plan generation unchanged since the path was learnt, its periods not
over) and whose hold fits in the free room of every pool on it is admitted here, with no ledger
write; every other call is decided by the ledger (``StakeReserve``), which also refills the free
room. Either way the call is appended to the journal before it is forwarded, so a ``kill -9``
leaves it to be billed as a lost call when the stake is settled. Everything here runs on the
proxy's event loop.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bbnet import metrics
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import (
    Admission,
    Outcome,
    ReserveRequest,
    ReserveResult,
    StakeFree,
    StakeReserve,
    StakeTopUp,
    Written,
)
from bbnet.plans import PathKey
from bbnet.pools import usd_micros
from bbnet.stake_journal import StakeJournal
from bbnet.stakes import HEADROOM_CALLS, StakeGone

log = logging.getLogger("bbnet.meter")
ROTATE_LINES = 20_000  # the journal is rewritten with only its open calls past this many lines
LOW_WATER = HEADROOM_CALLS // 2  # free room under this many of a call's holds asks for a top-up

type Holds = tuple[tuple[int, int], ...]  # (pool id, amount) a call holds in the stake


@dataclass(frozen=True)
class Held:
    """Where a call's hold is: in this stake, these amounts."""

    stake: str
    holds: Holds


@dataclass(frozen=True)
class KnownPath:
    pools: tuple[tuple[int, str], ...]  # (pool id, unit), root first
    until: float
    stamp: tuple[int, int]


def fast_holds(
    tokens: int, usd: int, pools: tuple[tuple[int, str], ...], free: dict[int, int]
) -> Holds | None:
    """What a call of ``tokens`` and ``usd`` micro-USD holds in each pool if admitted whole (as the
    ledger's ALLOW would hold it), or None when that does not fit in the free room of every pool."""
    holds: list[tuple[int, int]] = []
    for pool_id, unit in pools:
        amount = tokens if unit == "tokens" else usd
        if amount:
            if free.get(pool_id, 0) < amount:
                return None
            holds.append((pool_id, amount))
    return tuple(holds)


class Stake:
    def __init__(self, ledger: Ledger, directory: Path, lease_seconds: float) -> None:
        self.ledger = ledger
        self.directory = directory
        self.lease_seconds = lease_seconds
        self._open_new()

    def _open_new(self) -> None:
        self.key = uuid.uuid4().hex
        self.journal = StakeJournal(self.directory / f"{self.key}.journal")
        self.ledger.open_stake(self.key, self.journal.path, self.lease_seconds)
        self.free: dict[int, int] = {}
        self._paths: dict[PathKey, KnownPath] = {}
        self._open: dict[str, dict[str, Any]] = {}  # journal rows of calls admitted, not yet settled
        self._low: tuple[PathKey, Holds] | None = None  # the last call admitted that left room low
        self.last_admitted = time.monotonic()

    # -- admitting ---------------------------------------------------------------------------

    def reserve(
        self, req: ReserveRequest, decide: Callable[[StakeReserve], Admission]
    ) -> tuple[ReserveResult, Held | None]:
        """The call admitted from the free room when it covers it, else by ``decide`` (the ledger's
        ``StakeReserve``, in one transaction with the meter's queued writes); journalled before it
        returns, so before the call can be forwarded. Held None: a DENY, or a reservation row."""
        fast: tuple[ReserveResult, Held | None] | None = self.admit(req, time.time())
        if fast is not None:
            metrics.admitted(req.provider, fast[0])
        else:
            try:
                adm = decide(StakeReserve(req, self.key, tuple(self.free.items())))
            except StakeGone:
                self.reopen("it was settled as a dead meter's")
                adm = decide(StakeReserve(req, self.key, ()))
            self.decided(req, adm)
            fast = adm.result, None if adm.holds is None else Held(self.key, adm.holds)
        result, held = fast
        if held is not None:
            try:
                self.admitted(req, result, held)
            except OSError as e:  # not journalled: not to be forwarded
                self._give_back(held)
                raise LedgerError(f"stake journal {self.journal.path}: {e}") from None
        return result, held

    def admit(self, req: ReserveRequest, now: float) -> tuple[ReserveResult, Held] | None:
        """The call admitted from the free room, or None when the ledger must decide it."""
        path = self._paths.get((req.bottle, req.agent, req.provider))
        if path is None or now >= path.until:
            return None
        tokens = req.input_tokens + req.max_output_tokens
        usd = usd_micros(req.rates, req.input_tokens, req.max_output_tokens)
        holds = fast_holds(tokens, usd, path.pools, self.free)
        if holds is None or self.ledger.stamp() != path.stamp:
            return None
        for pool_id, amount in holds:
            self.free[pool_id] -= amount
        if any(self.free[pool_id] < LOW_WATER * amount for pool_id, amount in holds):
            self._low = (req.bottle, req.agent, req.provider), holds
        return ReserveResult(Outcome.ALLOW, req.key, tokens, usd, req.max_output_tokens), Held(
            self.key, holds
        )

    def decided(self, req: ReserveRequest, adm: Admission) -> None:
        """What the ledger's decision (a ``StakeReserve``) tells: the free room, and the path."""
        self.free.update(adm.free)
        key = (req.bottle, req.agent, req.provider)
        if adm.stamp is not None and adm.holds is not None:
            self._paths[key] = KnownPath(adm.path, adm.until, adm.stamp)
        else:
            self._paths.pop(key, None)

    def admitted(self, req: ReserveRequest, result: ReserveResult, held: Held) -> None:
        """Journal the call (before it is forwarded)."""
        row = {
            "key": req.key, "bottle": req.bottle, "agent": req.agent, "provider": req.provider,
            "model": req.model, "tokens": result.tokens, "usd_micros": result.usd_micros,
            "pools": [list(hold) for hold in held.holds], "created_at": time.time(),
            "input_tokens": req.input_tokens, "output_seen": 0, "node": self.ledger.node,
        }  # fmt: skip
        self.journal.admitted(row)
        self._open[req.key] = row
        self.last_admitted = time.monotonic()

    def top_up(self) -> StakeTopUp | None:
        """The write that refills the free room the last call left low, if one did and its path
        still stands; built when it is written (``LedgerWrites.flush``), with the free room then."""
        low, self._low = self._low, None
        if low is None or (path := self._paths.get(low[0])) is None:
            return None
        (bottle, agent, provider), holds = low
        free = tuple((pool_id, self.free.get(pool_id, 0)) for pool_id, _ in path.pools)
        return StakeTopUp(self.key, bottle, agent, provider, holds, free)

    def topped_up(self, out: Written) -> None:
        """What the top-up gave: the free room now; a stake found settled is replaced."""
        if isinstance(out, StakeFree):
            self.free.update(out.free)
        elif isinstance(out, StakeGone):
            self.reopen("it was settled as a dead meter's")
        elif isinstance(out, Exception):  # the calls still get room from the ledger when they need it
            log.warning("stake top-up failed: %s", out)

    # -- settling ----------------------------------------------------------------------------

    def released(self, key: str, held: Held) -> None:
        """The call ended with no usage: its hold is free room again."""
        if held.stake != self.key or self._open.pop(key, None) is None:
            return  # admitted from a stake since settled
        self._give_back(held)
        try:
            self.journal.released(key)
        except OSError as e:  # should the meter die now, the call is billed as lost: logged here
            log.error("stake journal %s: release of %s not written: %s", self.journal.path, key, e)

    def _give_back(self, held: Held) -> None:
        for pool_id, amount in held.holds:
            self.free[pool_id] = self.free.get(pool_id, 0) + amount

    def committed(self, key: str) -> None:
        """The call's usage row is written (its hold moved to used in the ledger)."""
        if self._open.pop(key, None) is None:
            return
        try:
            self.journal.committed(key)
            if self.journal.lines > ROTATE_LINES:
                self.journal.rotate(self._open.values())
        except OSError as e:  # the usage row is written: the call is settled without the line
            log.error("stake journal %s: %s", self.journal.path, e)

    def seen(self, outputs: dict[str, int]) -> None:
        """Journal the output each open call's stream has shown (billed if the meter dies)."""
        for key, n in outputs.items():
            if n > 0 and key in self._open:
                self.journal.seen(key, n)

    # -- the stake itself --------------------------------------------------------------------

    def renew(self) -> None:
        """Extend the stake's lease; a stake found settled (its lease had expired) is replaced."""
        if not self.ledger.renew_stake(self.key, self.lease_seconds):
            self.reopen(
                "it was settled as a dead meter's (lease expired): its open calls were billed as lost"
            )

    def reopen(self, why: str) -> None:
        """Replace the stake with a new one (logged: the old one is gone, ``why``)."""
        log.error("stake %s: %s; opening a new one", self.key, why)
        self.journal.close()
        self._open_new()

    def return_free(self) -> None:
        """Give the free room back to the pools (the meter is idle: other meters may use it)."""
        if any(self.free.values()):
            self.ledger.return_free(self.key, self.free)
            self.free = {}

    def close(self) -> None:
        """Settle the stake: calls still open billed as lost, the rest freed; the journal removed."""
        self.journal.close()
        billed = self.ledger.settle_stake(self.key)
        if billed:
            log.warning("stopping with %d calls unsettled: billed as lost calls", len(billed))
