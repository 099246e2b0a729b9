"""Pure budget burn: which usage counts in a pool, how fast it is burning, when it runs out.

A pool's usage is every call on whose path the pool lies (see :func:`bbnet.pools.path_scopes`):
``global`` sees everything, ``bottle:X`` sees X and the bottles nested under it, ``agent:B/A``
sees agent A in bottle B; a pool keyed by a provider sees only that provider's calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bbnet.model import MICROS_PER_USD
from bbnet.pools import path_scopes, period_start


@dataclass(frozen=True)
class Burn:
    """A (bottle, agent, provider)'s usage over the last hour and the last 24 hours."""

    bottle: str
    agent: str
    provider: str
    tokens_1h: int
    tokens_24h: int
    micros_1h: int
    micros_24h: int


@dataclass(frozen=True)
class PoolBurn:
    scope: str
    provider: str
    unit: str  # tokens | usd: every amount below is in this unit
    period: str
    limit: float
    used: float
    reserved: float
    remaining: float
    burn_1h: float  # per hour, over the last hour
    burn_24h: float  # per hour, averaged over the last 24 hours
    exhausts_at: float | None  # epoch seconds; None when not burning, exhausted, or the period resets first
    status: str  # exhausted | full | idle | burning | resets first


def ancestry(bottle: str, parents: Mapping[str, str | None]) -> list[str]:
    """``bottle`` then its ancestors, nearest first (a parent cycle stops at the repeat)."""
    chain = [bottle]
    parent = parents.get(bottle)
    while parent is not None and parent not in chain:
        chain.append(parent)
        parent = parents.get(parent)
    return chain


def scopes_of_call(bottle: str, agent: str, parents: Mapping[str, str | None]) -> list[str]:
    return path_scopes(ancestry(bottle, parents), agent)


def period_end(period: str, start: float) -> float | None:
    """When the period that began at ``start`` resets; ``total`` never does."""
    if period == "total":
        return None
    if period == "day":
        return start + 86400
    if period == "week":
        return start + 7 * 86400
    return period_start("month", start + 32 * 86400)


def current_period_starts(now: float) -> dict[str, float]:
    return {period: period_start(period, now) for period in ("total", "day", "week", "month")}


def _in_unit(unit: str, amount: int) -> float:
    return amount / MICROS_PER_USD if unit == "usd" else float(amount)


def pool_burn(
    scope: str,
    provider: str,
    unit: str,
    period: str,
    limit: int,
    used: int,
    reserved: int,
    burns: Iterable[Burn],
    parents: Mapping[str, str | None],
    now: float,
) -> PoolBurn:
    """A pool's counters with its burn rates and projected exhaustion.

    The projection uses the last hour's rate (what is happening now); when nothing ran in the last
    hour it falls back to the 24-hour average, so a bursty workload is not reported as idle.
    """
    last_hour = last_day = 0
    for b in burns:
        if provider not in ("*", b.provider) or scope not in scopes_of_call(b.bottle, b.agent, parents):
            continue
        last_hour += b.micros_1h if unit == "usd" else b.tokens_1h
        last_day += b.micros_24h if unit == "usd" else b.tokens_24h
    remaining = limit - used - reserved
    rate_per_hour = last_hour if last_hour > 0 else last_day / 24
    exhausts_at: float | None = None
    if used >= limit:
        status = "exhausted"
    elif remaining <= 0:
        status = "full"  # held by in-flight reservations
    elif rate_per_hour <= 0:
        status = "idle"
    else:
        projected = now + remaining / rate_per_hour * 3600
        end = period_end(period, period_start(period, now))
        if end is not None and projected >= end:
            status = "resets first"
        else:
            status, exhausts_at = "burning", projected
    return PoolBurn(
        scope=scope,
        provider=provider,
        unit=unit,
        period=period,
        limit=_in_unit(unit, limit),
        used=_in_unit(unit, used),
        reserved=_in_unit(unit, reserved),
        remaining=_in_unit(unit, remaining),
        burn_1h=_in_unit(unit, last_hour),
        burn_24h=_in_unit(unit, last_day) / 24,
        exhausts_at=exhausts_at,
        status=status,
    )


def concerns_bottle(scope: str, bottle: str, parents: Mapping[str, str | None]) -> bool:
    """Whether a pool limits ``bottle``: a scope on its path, or one of its agents."""
    return scope in path_scopes(ancestry(bottle, parents), None) or scope.startswith(f"agent:{bottle}/")
