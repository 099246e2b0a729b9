"""Independent plain-Python answers for the reports, computed from the calls that went in."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from genai_prices import Usage, calc_price

from bbnet.model import UsageRecord

PRICE_PROVIDER = {"anthropic": "anthropic", "openai": "openai"}


def price(call: UsageRecord) -> float | None:
    """genai-prices' cost of one call, straight from the library (None: unknown model)."""
    usage = Usage(
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_write_tokens,
    )
    try:
        return float(
            calc_price(usage, call.model or "", provider_id=PRICE_PROVIDER[call.provider]).total_price
        )
    except LookupError:
        return None


def key_of(call: UsageRecord, key: str) -> str | None:
    assert call.ts is not None
    if key == "day":
        return datetime.fromtimestamp(call.ts, UTC).date().isoformat()
    if key == "hour":
        return datetime.fromtimestamp(call.ts, UTC).strftime("%Y-%m-%dT%H:00Z")
    value: str | None = getattr(call, key)
    return value


def group(calls: Iterable[UsageRecord], by: Sequence[str]) -> dict[tuple[str | None, ...], list[UsageRecord]]:
    groups: dict[tuple[str | None, ...], list[UsageRecord]] = defaultdict(list)
    for call in calls:
        groups[tuple(key_of(call, k) for k in by)].append(call)
    return groups


def usage_rows(
    calls: Iterable[UsageRecord], by: Sequence[str]
) -> dict[tuple[str | None, ...], dict[str, int]]:
    def total(members: list[UsageRecord], field: Callable[[UsageRecord], int]) -> int:
        return sum(field(c) for c in members)

    return {
        key: {
            "calls": len(members),
            "input_tokens": total(members, lambda c: c.input_tokens),
            "cache_write_tokens": total(members, lambda c: c.cache_write_tokens),
            "cache_read_tokens": total(members, lambda c: c.cache_read_tokens),
            "output_tokens": total(members, lambda c: c.output_tokens),
            "reasoning_tokens": total(members, lambda c: c.reasoning_tokens),
            "tokens": total(members, lambda c: c.input_tokens + c.output_tokens),
            "estimated_calls": sum(1 for c in members if c.estimated),
            "lost_calls": sum(1 for c in members if c.lost),
        }
        for key, members in group(calls, by).items()
    }


def cost_rows(
    calls: Iterable[UsageRecord], by: Sequence[str]
) -> dict[tuple[str | None, ...], dict[str, float | int | None]]:
    rows: dict[tuple[str | None, ...], dict[str, float | int | None]] = {}
    for key, members in group(calls, by).items():
        prices = [price(c) for c in members]
        priced = [p for p in prices if p is not None]
        rows[key] = {
            "calls": len(members),
            "tokens": sum(c.input_tokens + c.output_tokens for c in members),
            "cost_usd": sum(priced) if priced else None,
            "unpriced_calls": len(prices) - len(priced),
            "lost_calls": sum(1 for c in members if c.lost),
        }
    return rows
