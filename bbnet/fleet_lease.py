"""The lease manager: one thread per host between its ledger and the fleet database.

It keeps each fleet pool's local slice topped up above the low-water mark, settles consumption and
renews the lease every ``settle_seconds``, returns the unused slice when the pool is idle or its
period is over, and reclaims the expired leases of dead nodes. A call never waits for it, except the
one that finds the slice too small for it (:class:`FleetLedger.reserve` leases what it needs, one
round trip). With the fleet database unreachable the host serves within the slice it holds until its
lease would lapse, then gives up the rest (a reclaiming node may hand it to others); a call that needs
more then fails closed (503 BUDGET_CONFIG, unless fail-open) and settlement catches up on reconnect.

It also ships the host's usage rows to the fleet database for fleet-wide reports (bbnet/shipping.py):
one batch per step while behind, then every ``settle_seconds``; while the fleet is away the rows wait
in the host's ledger, and the rest go at a clean stop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bbnet import fleet, pg, shipping
from bbnet import pools as arith
from bbnet.fleet_ops import PoolKey
from bbnet.ledger import Ledger
from bbnet.model import Budget, Outcome, PoolView, ReserveRequest, ReserveResult
from bbnet.settings import Settings
from bbnet.slices import FLEET_SOURCE, LocalSlice
from bbnet.store import LedgerError

log = logging.getLogger("bbnet.fleet")
_RECONNECT_S = 1.0
_MIRROR_S = 5.0
_TICK_S = 0.02
_DRAIN_S = 30.0  # the most a clean stop spends shipping the rows left behind
_CALL_WAIT_S = 1.0  # the most a call waits for the manager before it fails closed
_FLEET_ERRORS = (LedgerError, sqlite3.Error, psycopg.Error, OSError)


def describe(url: str, err: BaseException) -> str:
    """One line saying why the fleet database cannot be used, never its password."""
    if isinstance(err, LedgerError):  # the ledger's own messages name the URL without its password
        reason = str(err)
    elif isinstance(err, Exception):
        reason = pg.describe(url, err)
    else:
        reason = type(err).__name__
    return f"fleet database: {reason}"


def open_fleet(url: str) -> Ledger:
    """The fleet ledger at ``url``: a PostgreSQL URL, or a SQLite file shared by the hosts."""
    return Ledger.open(url)


@dataclass
class _Watch:
    """What the manager remembers of one local pool between steps."""

    seen: tuple[int, int] = (-1, -1)  # (used, reserved) last step
    since: float = 0.0  # when they last changed
    idle: bool = False  # the unused slice went back; top up again on the next activity
    finished: bool = False  # an ended period, settled and returned


@dataclass
class LeaseManager:
    local: Ledger
    url: str
    node: str
    cfg: fleet.SliceConfig
    settings_budgets: list[Budget] = field(default_factory=list)  # written to the fleet on connect
    connect: Callable[[str], Ledger] = open_fleet
    fleet_db: Ledger | None = None
    problem: str = "fleet database not contacted yet"
    valid_until: float = 0.0  # the leases this host holds lapse then unless renewed
    _keys: set[tuple[str, str, str]] = field(default_factory=set)  # the fleet's budgets
    _limits: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _short: set[PoolKey] = field(default_factory=set)  # pools whose last grant fell short
    _watch: dict[int, _Watch] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next_connect: float = 0.0
    _next_settle: float = 0.0
    _next_mirror: float = 0.0
    _next_reclaim: float = 0.0
    _next_ship: float = 0.0
    _shipped: int | None = None  # the fleet's watermark for this host's rows; None: ask it

    # -- the thread ------------------------------------------------------------------------------

    def begin(self, now: float) -> None:
        """Before the fleet is asked anything: know the fleet budgets (the ones mirrored last time and
        the settings'), and hold no slice, since a lease from before may have lapsed and been reclaimed
        meanwhile. A call then fails closed until the fleet grants a slice."""
        known = {
            (str(b.scope), b.provider, b.unit): b for b in self.local.budgets() if b.source == FLEET_SOURCE
        }
        known.update({(str(b.scope), b.provider, b.unit): b for b in self.settings_budgets})
        self.local.mirror_fleet_budgets(list(known.values()), now)
        self._keys = set(known)
        self._limits = {k: b.limit for k, b in known.items()}
        for s in self.local.slices(now):
            self.local.shrink_slice(s.pool_id, 0)
        self.step(now)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bbnet-fleet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, settle and return every unused slice (a clean stop leaves no lease to
        expire), and ship the usage rows not shipped yet."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            if self.fleet_db is not None:
                try:
                    self._settle_all(time.time(), release_all=True)
                    drain_until = time.monotonic() + _DRAIN_S
                    while not self._ship(time.time()) and time.monotonic() < drain_until:
                        pass
                except _FLEET_ERRORS as e:
                    log.warning("fleet: final settlement failed: %s", describe(self.url, e))
                self.fleet_db.close()
                self.fleet_db = None

    def _run(self) -> None:
        while not self._stop.wait(_TICK_S):
            try:
                self.step(time.time())
            except Exception:  # the manager must outlive any one bad step
                log.exception("fleet: lease step failed")

    # -- one step --------------------------------------------------------------------------------

    def step(self, now: float) -> None:
        with self._lock:
            if self.fleet_db is None and not self._connect(now):
                self._lapse(now)
                return
            try:
                self._step(now)
            except _FLEET_ERRORS as e:
                self._lost(e)
                self._lapse(now)

    def _connect(self, now: float) -> bool:
        if now < self._next_connect:
            return False
        self._next_connect = now + _RECONNECT_S
        try:
            db = self.connect(self.url)
        except _FLEET_ERRORS as e:
            self._lost(e)
            return False
        self.fleet_db = db
        log.log(logging.WARNING if self.valid_until else logging.INFO, "fleet: connected to %s (node %s)",
                pg.redact(self.url), self.node)  # fmt: skip
        self.problem = ""
        self._next_settle = self._next_reclaim = self._next_ship = 0.0
        self._shipped = None
        try:
            if self.settings_budgets:
                db.sync_budgets(self.settings_budgets)
            self._mirror(now)
        except _FLEET_ERRORS as e:
            self._lost(e)
            return False
        return True

    def _lost(self, err: BaseException) -> None:
        problem = describe(self.url, err)
        if problem != self.problem:
            log.warning("fleet: %s; serving within the slices held", problem)
        self.problem = problem
        if self.fleet_db is not None:
            with contextlib.suppress(*_FLEET_ERRORS):
                self.fleet_db.close()
            self.fleet_db = None

    def _lapse(self, now: float) -> None:
        """Near the end of an unrenewed lease give up what no local call holds: another node may
        reclaim the lease once it expires, and must not find this host still spending it."""
        if self.valid_until and now >= self.valid_until - self.cfg.lease_seconds / 4:
            for s in self.local.slices(now):
                if s.limit > s.used + s.reserved:
                    self.local.shrink_slice(s.pool_id, 0)

    def _step(self, now: float) -> None:
        assert self.fleet_db is not None
        if now >= self._next_mirror:
            self._mirror(now)
        if now >= self._next_settle:
            self._settle_all(now)
        for s in self.local.slices(now):
            w = self._watched(s, now)
            if (
                self._current(s.key, now)
                and not w.idle
                and s.key not in self._short
                and s.key.budget in self._keys
            ):
                self._top_up(s, 0, now)
        if now >= self._next_reclaim:
            for node, amount in self.fleet_db.fleet_reclaim(now):
                log.warning("fleet: reclaimed %d of node %s's expired lease", amount, node)
            self._next_reclaim = now + self.cfg.lease_seconds / 2
        if now >= self._next_ship and self._ship(now):
            self._next_ship = now + self.cfg.settle_seconds

    def _ship(self, now: float) -> bool:
        """Ship the next batch of this host's usage rows; True when none are left behind. The rows
        are named by the node they carry (``self.local.node``), which is what reports group by."""
        assert self.fleet_db is not None
        node = self.local.node
        if self._shipped is None:
            self._shipped = self.fleet_db.fleet_shipped(node)
        after = shipping.start_after(self._shipped, self.local.last_usage_id())
        b = shipping.batch(self._shipped, self.local.usage(since_id=after, limit=shipping.BATCH_ROWS), node)
        if b is None:
            return True
        self._shipped, collided = self.fleet_db.fleet_ship(node, b, now)
        if collided:
            log.warning("fleet: %d usage rows not shipped: another node's rows hold their keys (%s…)",
                        len(collided), collided[0])  # fmt: skip
        return shipping.caught_up(b) and self._shipped == b.upto

    def _mirror(self, now: float) -> None:
        assert self.fleet_db is not None
        budgets = [b for b in self.fleet_db.budgets() if b.scope.kind == "global"]
        self.local.mirror_fleet_budgets(budgets, now)
        self._keys = {(str(b.scope), b.provider, b.unit) for b in budgets}
        self._limits = {(str(b.scope), b.provider, b.unit): b.limit for b in budgets}
        self._next_mirror = now + _MIRROR_S

    @staticmethod
    def _current(key: PoolKey, now: float) -> bool:
        return key.period_start == arith.period_start(key.period, now)

    def _watched(self, s: LocalSlice, now: float) -> _Watch:
        w = self._watch.setdefault(s.pool_id, _Watch(since=now))
        if (s.used, s.reserved) != w.seen:
            w.seen, w.since, w.idle = (s.used, s.reserved), now, False
        return w

    def _settle_all(self, now: float, *, release_all: bool = False) -> None:
        for s in self.local.slices(now):
            w = self._watched(s, now)
            if w.finished:
                continue
            ended = not self._current(s.key, now)
            idle = s.reserved == 0 and now - w.since >= self.cfg.idle_seconds
            self._settle(s, now, release=release_all or ended or idle or s.key in self._short)
            if idle:
                w.idle = True
            if ended and s.reserved == 0:
                w.finished = True
        self._next_settle = now + self.cfg.settle_seconds
        self.valid_until = now + self.cfg.lease_seconds

    def _settle(self, s: LocalSlice, now: float, *, release: bool) -> None:
        assert self.fleet_db is not None
        if release:
            shrunk = self.local.shrink_slice(s.pool_id, fleet.keep_amount(s.limit, s.used, s.reserved,
                                                                           release=True))  # fmt: skip
            s = shrunk or s
        done = self.fleet_db.fleet_settle(self.node, s.key, s.used, s.limit, self.cfg.lease_seconds, now)
        if done is None:
            return
        settlement, pool, short = done
        (self._short.add if short else self._short.discard)(s.key)
        open_ = fleet.slice_open(pool.limit, pool.used)
        if settlement.local_limit != s.limit or not open_:
            self.local.set_slice(s.pool_id, settlement.local_limit, open_)

    def _top_up(self, s: LocalSlice, need: int, now: float) -> int:
        assert self.fleet_db is not None
        limit = self._limits.get(s.key.budget)
        if limit is None:
            return 0
        # a short pool is leased per call: what the call needs, no more
        size = 1 if s.key in self._short else fleet.slice_size(self.cfg, s.key.unit, limit)
        ask = fleet.top_up_ask(s.limit, s.used, s.reserved, size, self.cfg.low_water, need)
        if ask <= 0:
            return 0
        granted, pool = self.fleet_db.fleet_grant(self.node, s.key, ask, self.cfg.lease_seconds, now)
        (self._short.add if fleet.short(ask, granted) else self._short.discard)(s.key)
        if pool is not None:  # also notes whether the fleet has room beyond the slice, for this call
            self.local.grow_slice(s.pool_id, granted, fleet.slice_open(pool.limit, pool.used, need))
        return granted

    # -- the call that does not fit --------------------------------------------------------------

    def manages(self, pool: PoolView) -> bool:
        return (pool.scope, pool.provider, pool.unit) in self._keys

    def top_up_now(self, pool: PoolView, need: int) -> int:
        """Lease what a call needs of ``pool`` now (one round trip); raises LedgerError when the fleet
        database is unreachable, so the call fails closed. It never connects (the manager's thread
        does, at most once a second) and never waits long behind the manager's step."""
        if not self._lock.acquire(timeout=_CALL_WAIT_S):
            raise LedgerError(f"fleet database: no answer within {_CALL_WAIT_S:.0f}s")
        try:
            if self.fleet_db is None:
                raise LedgerError(self.problem or "fleet database: not connected")
            now = time.time()
            key = PoolKey.of(pool)
            found = next((s for s in self.local.slices(now) if s.key == key), None)
            if found is None:
                return 0
            self._watch.pop(found.pool_id, None)  # activity: no longer idle
            try:
                return self._top_up(found, need, now)
            except _FLEET_ERRORS as e:
                self._lost(e)
                raise LedgerError(self.problem) from None
        finally:
            self._lock.release()


class FleetLedger(Ledger):
    """A host's ledger with fleet budgets: a call the slice cannot pay for leases more, then retries."""

    lease: LeaseManager | None = None
    takes_stakes = False  # its global pools are fleet slices, topped up by reserve below

    def reserve(self, req: ReserveRequest) -> ReserveResult:
        result = super().reserve(req)
        m, pool = self.lease, result.governing
        if m is None or pool is None or result.outcome is Outcome.ALLOW or not m.manages(pool):
            return result
        need = req.input_tokens + req.max_output_tokens
        if pool.unit == "usd":
            need = arith.usd_micros(req.rates, req.input_tokens, req.max_output_tokens)
        degraded = result.outcome is Outcome.DEGRADE
        if degraded:  # its hold goes back first, so the lease asks for the whole call
            self.release(req.key)
        try:
            granted = m.top_up_now(pool, need)
        except LedgerError:
            if degraded:  # the fleet is away: the slice still pays for the lowered call
                return super().reserve(req)
            raise
        return super().reserve(req) if granted > 0 or degraded else result

    def close(self) -> None:
        if self.lease is not None:
            self.lease.stop()
            self.lease = None
        super().close()


def open_host_ledger(db: str, settings: Settings) -> Ledger:
    """The host's ledger; with a ``fleet:`` section, one whose lease manager is running (its first
    step, the first slices, done before the first call when the fleet database answers)."""
    if settings.fleet is None:
        return Ledger.open(db, node=settings.node or "")
    ledger = FleetLedger.open(db, node=settings.node or "")
    f = settings.fleet
    manager = LeaseManager(ledger, f.url, ledger.node, slice_config(f),
                           settings.global_budgets())  # fmt: skip
    ledger.lease = manager
    manager.begin(time.time())
    manager.start()
    return ledger


def slice_config(s: Any) -> fleet.SliceConfig:
    """The settings' ``fleet:`` section as the pure core's config."""
    usd = None if s.slice_usd is None else math.ceil(s.slice_usd * 1_000_000)
    return fleet.SliceConfig(slice_tokens=s.slice_tokens, slice_usd_micros=usd, slice_fraction=s.slice_fraction,
                             low_water=s.low_water, lease_seconds=s.lease_seconds,
                             settle_seconds=s.settle_seconds, idle_seconds=s.idle_seconds)  # fmt: skip
