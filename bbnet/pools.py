"""Pure budget arithmetic: periods, the scopes on a call's path, and the reserve decision.

A call is admitted only if every pool on its path has room (pools nest like cgroup limits). When
the asked-for output does not fit, the largest output every pool can still pay for is offered
(DEGRADE); below ``min_output_tokens`` the call is refused (DENY). The pool that bounds the answer
is reported as *governing*.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bbnet.model import Outcome, PoolView, Rates, ReserveRequest


def period_start(period: str, now: float) -> float:
    """Start (UTC epoch seconds) of the period containing ``now``; ``total`` never resets."""
    if period == "total":
        return 0.0
    t = datetime.fromtimestamp(now, UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = day
    elif period == "week":
        start = day - timedelta(days=day.weekday())  # ISO week: Monday
    elif period == "month":
        start = day.replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}: expected total, day, week or month")
    return start.timestamp()


def period_end(period: str, start: float) -> float:
    """End (exclusive) of the period that begins at ``start``."""
    if period == "total":
        return math.inf
    t = datetime.fromtimestamp(start, UTC)
    if period == "day":
        return (t + timedelta(days=1)).timestamp()
    if period == "week":
        return (t + timedelta(days=7)).timestamp()
    if period == "month":
        return (
            t.replace(year=t.year + 1, month=1) if t.month == 12 else t.replace(month=t.month + 1)
        ).timestamp()
    raise ValueError(f"unknown period {period!r}: expected total, day, week or month")


def path_scopes(chain: Sequence[str], agent: str | None) -> list[str]:
    """Scopes a call counts in, root first: global, ancestors..., the bottle, then its agent.

    ``chain`` is the bottle followed by its ancestors (nearest first).
    """
    scopes = ["global", *(f"bottle:{b}" for b in reversed(chain))]
    if agent and chain:
        scopes.append(f"agent:{chain[0]}/{agent}")
    return scopes


def usd_micros(rates: Rates | None, input_tokens: int, output_tokens: int) -> int:
    """Projected micro-USD of a call (0 when unpriced), rounded up."""
    if rates is None:
        return 0
    return math.ceil(input_tokens * rates.input_micros + output_tokens * rates.output_micros - 1e-9)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    output_tokens: int  # the output the reservation covers
    tokens: int
    usd_micros: int
    governing: PoolView | None
    exhausted: bool
    needed: int = 0  # DENY: the least the call needs in the governing pool's unit


def _max_output(pool: PoolView, req: ReserveRequest) -> int | None:
    """The most output tokens ``pool`` can still pay for; None when the pool does not apply."""
    room = pool.limit - pool.used - pool.reserved
    if pool.unit == "tokens":
        return room - req.input_tokens
    if req.rates is None:
        return None  # unpriced: USD pools cannot be charged for it
    room_after_input = room - req.input_tokens * req.rates.input_micros
    if room_after_input < 0:
        return -1
    if req.rates.output_micros <= 0:
        return req.max_output_tokens
    out = math.floor(room_after_input / req.rates.output_micros)
    while out > 0 and usd_micros(req.rates, req.input_tokens, out) > room:
        out -= 1
    return out


def least_needed(pool: PoolView, req: ReserveRequest) -> int:
    """The least ``req`` can be admitted with, in ``pool``'s unit: its input and minimum output."""
    if pool.unit == "tokens":
        return req.input_tokens + req.min_output_tokens
    return usd_micros(req.rates, req.input_tokens, req.min_output_tokens)


def _no_room_left(pool: PoolView, req: ReserveRequest) -> bool:
    """True when real usage alone (not in-flight holds) leaves too little for this call (a fleet
    slice the fleet can still top up is never exhausted)."""
    return not pool.slice_open and pool.limit - pool.used < least_needed(pool, req)


def decide(req: ReserveRequest, pools: Sequence[PoolView]) -> Decision:
    """ALLOW, DEGRADE or DENY ``req`` against every pool on its path."""
    if req.input_tokens < 0 or req.max_output_tokens < 0:
        raise ValueError("token amounts must not be negative")
    cap = req.max_output_tokens
    governing: PoolView | None = None
    for pool in pools:
        most = _max_output(pool, req)
        if most is not None and most < cap:
            cap, governing = most, pool
    if cap >= req.max_output_tokens:
        out = req.max_output_tokens
        return Decision(
            Outcome.ALLOW,
            out,
            req.input_tokens + out,
            usd_micros(req.rates, req.input_tokens, out),
            None,
            False,
        )
    if cap >= req.min_output_tokens:
        return Decision(
            Outcome.DEGRADE,
            cap,
            req.input_tokens + cap,
            usd_micros(req.rates, req.input_tokens, cap),
            governing,
            False,
        )
    assert governing is not None
    return Decision(
        Outcome.DENY, 0, 0, 0, governing, _no_room_left(governing, req), least_needed(governing, req)
    )
