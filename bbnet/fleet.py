"""Pure: fleet budgets — global pools shared by many hosts through leased slices.

The fleet database holds each global budget's pool (``used``, ``reserved``) and one lease per
(node, pool): ``granted`` (what the node holds, counted in the pool's ``reserved``) and ``consumed``
(what it has settled, moved to ``used``). A node reserves locally against its slice, so a call never
waits on the fleet; the lease manager (:mod:`bbnet.fleet_lease`) tops the slice up below a low-water
mark, settles consumption, renews the lease and returns what it does not need.

Invariants (kept by the functions here, tested in tests/bbnet/test_fleet.py):
- a lease always has ``granted >= consumed``, so its part of the pool's ``reserved`` is
  ``granted - consumed`` and never negative; consumption beyond the grant (usage before the budget
  was a fleet one, a call whose usage beat its estimate) is settled as ``used`` all the same;
- a node's local limit is its ``granted``: a local reservation never exceeds what the fleet holds
  for it, so fleet ``used + reserved <= limit`` while every call's usage is within its reservation;
- what a dead node consumed but never settled is the fleet's only overshoot, at most its
  ``granted - consumed`` when it died (:func:`overshoot_bound`); the node, restarted, settles it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SliceConfig:
    """How big a slice is and when it moves (the settings' ``fleet:`` section, amounts as integers)."""

    slice_tokens: int | None = None  # a tokens pool's slice; None: slice_fraction of the limit
    slice_usd_micros: int | None = None  # a USD pool's slice; None: slice_fraction of the limit
    slice_fraction: float = 0.05
    low_water: float = 0.5  # top up when the slice's remaining falls below this fraction of a slice
    lease_seconds: float = 30.0  # a lease not renewed for this long is reclaimed by any node
    settle_seconds: float = 1.0  # how often consumption is settled and the lease renewed
    idle_seconds: float = 30.0  # no local activity for this long: the unused slice goes back


@dataclass(frozen=True)
class Lease:
    """A node's lease on one fleet pool."""

    granted: int = 0
    consumed: int = 0

    @property
    def held(self) -> int:
        """This lease's part of the fleet pool's ``reserved``."""
        return self.granted - self.consumed


@dataclass(frozen=True)
class Settlement:
    lease: Lease  # the lease after settling
    used_delta: int  # added to the fleet pool's used
    reserved_delta: int  # added to the fleet pool's reserved (negative: returned or consumed)

    @property
    def local_limit(self) -> int:
        """The node's local limit after settling: what the fleet now holds for it."""
        return self.lease.granted


def slice_size(cfg: SliceConfig, unit: str, limit: int) -> int:
    """One slice of a pool of ``limit`` (tokens or micro-USD): the configured size, else a fraction."""
    fixed = cfg.slice_tokens if unit == "tokens" else cfg.slice_usd_micros
    size = fixed if fixed is not None else math.ceil(limit * cfg.slice_fraction)
    return max(1, size)


def top_up_ask(local_limit: int, used: int, reserved: int, size: int, low_water: float, need: int = 0) -> int:
    """How much to lease so the node's remaining is a whole slice again (or ``need``, a call's
    projected amount that does not fit): 0 while remaining stays at or above the low-water mark."""
    remaining = local_limit - used - reserved
    if need <= remaining and remaining >= math.ceil(size * low_water):
        return 0
    return max(size, need) - remaining


def grant_amount(ask: int, limit: int, used: int, reserved: int) -> int:
    """What the fleet grants of ``ask``: all of it, or what remains of the pool."""
    return max(0, min(ask, limit - used - reserved))


def after_grant(lease: Lease, amount: int) -> Lease:
    return Lease(lease.granted + amount, lease.consumed)


def settle(lease: Lease, local_used: int, keep: int) -> Settlement:
    """Settle a node's lease from its local pool: ``local_used`` (all it has consumed this period)
    and ``keep`` (the local limit it wants to keep: its current one, or less to return some).

    Consumption only grows. The grant only shrinks here (grants go through :func:`grant_amount`), and
    never below what was consumed. Deltas are of absolute states, so a settlement that is retried
    after its answer was lost changes nothing the second time.
    """
    consumed = max(lease.consumed, local_used)
    granted = max(min(keep, lease.granted), consumed)
    new = Lease(granted, consumed)
    return Settlement(new, consumed - lease.consumed, new.held - lease.held)


def keep_amount(local_limit: int, used: int, reserved: int, *, release: bool) -> int:
    """The local limit to keep: all of it, or (idle, period over, lease about to lapse) only what
    local reservations still hold."""
    return min(local_limit, used + reserved) if release else local_limit


def reclaim(lease: Lease) -> Settlement:
    """An expired lease (a dead or cut-off node): its unconsumed grant goes back to the pool."""
    new = Lease(lease.consumed, lease.consumed)
    return Settlement(new, 0, -lease.held)


def overshoot_bound(leases: Iterable[Lease]) -> int:
    """The most the fleet can overshoot a pool if the nodes holding ``leases`` died now: each could
    have consumed, unsettled, all it held (later handed to others when its lease is reclaimed)."""
    return sum(max(0, lease.held) for lease in leases)


def slice_open(limit: int, fleet_used: int, need: int = 1) -> bool:
    """Whether a node's spent slice is not the pool spent: real usage leaves room for ``need`` (a
    call's), so slices other nodes hold, or room left, may come its way."""
    return limit - fleet_used >= max(need, 1)


def short(ask: int, granted: int) -> bool:
    """A grant that fell short of its ask: the pool is nearly spent, so every node gives back what
    no call of its holds, and leases per call from then on (no fragments stranded on idle nodes)."""
    return granted < ask
