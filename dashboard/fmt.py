"""Short text for narrow columns (pure): amounts, ages, projections, progress bars.

Everything the table shows is readable without colour: states are words, bars are characters
with a percentage, so a monochrome terminal over SSH loses nothing but the tint.
"""

from __future__ import annotations

import time

from analytics.budgets import PoolBurn
from bbnet.model import MICROS_PER_USD, PoolView

BAR_FULL, BAR_EMPTY = "█", "░"


def tokens(n: float) -> str:
    """``950``, ``12.3k``, ``4.56M``, ``1.2G``: at most 5 characters for any realistic count."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size * 0.9995:  # would show as at least "1" of this unit
            value = n / size
            return f"{value:.3g}{suffix}" if abs(value) < 999.5 else f"{value:.0f}{suffix}"
    return f"{n:.0f}"


def usd(micros: float) -> str:
    """``$0``, ``$0.0042``, ``$1.23``, ``$1,234``."""
    dollars = micros / MICROS_PER_USD
    if dollars == 0:
        return "$0"
    if abs(dollars) < 0.01:
        return f"${dollars:.4f}"
    if abs(dollars) < 1000:
        return f"${dollars:.2f}"
    return f"${dollars:,.0f}"


def amount(unit: str, value: float) -> str:
    return usd(value) if unit == "usd" else tokens(value)


def duration(seconds: float) -> str:
    """``45s``, ``12m``, ``3h``, ``5d``."""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m"
    if s < 86400:
        return f"{s // 3600:.0f}h"
    return f"{s // 86400:.0f}d"


def ago(ts: float | None, now: float) -> str:
    return "-" if ts is None else duration(now - ts)


def eta(burn: PoolBurn | None, now: float) -> str:
    """When the governing pool runs out: a duration, ``now`` (spent), or ``-`` (not burning)."""
    if burn is None:
        return "-"
    if burn.status in ("exhausted", "full"):
        return "now"
    if burn.exhausts_at is None:
        return "-"
    return duration(burn.exhausts_at - now)


def bar(share: float, width: int) -> str:
    """A progress bar of ``width`` characters; any spending shows at least one block."""
    clamped = min(max(share, 0.0), 1.0)
    filled = round(clamped * width)
    if clamped > 0 and filled == 0:
        filled = 1
    return BAR_FULL * filled + BAR_EMPTY * (width - filled)


def percent(share: float) -> str:
    return f"{min(share, 9.99) * 100:.0f}%"


def pool_label(pool: PoolView) -> str:
    """``bottle:ta anthropic tokens/day``."""
    period = "" if pool.period == "total" else f"/{pool.period}"
    return f"{pool.scope} {pool.provider} {pool.unit}{period}"


def clock(ts: float) -> str:
    """Local wall-clock time of day, for feeds and histories."""
    return time.strftime("%H:%M:%S", time.localtime(ts))
