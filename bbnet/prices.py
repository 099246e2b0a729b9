"""Prices from genai-prices: the cost of recorded usage and projected per-token rates.

Unknown models give ``None`` — reported as unpriced, never as $0. genai-prices is imported on
first use: it costs ~50 ms, and CLI commands that price nothing should not pay it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bbnet.model import MICROS_PER_USD, Rates, UsageRecord
from bbnet.providers import BUILTIN

_PRICE_PROVIDER = {p.key: p.price_provider for p in BUILTIN}


def price_provider(provider: str) -> str:
    return _PRICE_PROVIDER.get(provider, provider)


def load() -> None:
    """Import genai-prices and load its table now (~0.4 s here, once per process). The meter does
    it as it starts: its first call would otherwise wait for it on the event loop, and every flow
    with it."""
    from genai_prices import data_snapshot

    data_snapshot.get_snapshot()


@lru_cache(maxsize=4096)
def _model_price(provider: str, model: str) -> tuple[Any, Any] | None:
    """genai-prices' (provider, model) entry; looked up once per pair (the lookup dominates cost)."""
    from genai_prices import data_snapshot

    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, price_provider(provider), None)
    except (LookupError, ValueError):
        return None


def _usage(**counts: int) -> Any:
    from genai_prices import Usage

    return Usage(**counts)


def _exact(provider: str, model: str, usage: Any) -> Decimal | None:
    """genai-prices' own calculation (~0.1 ms: validation and tier decomposition on every call)."""
    found = _model_price(provider, model)
    if found is None:
        return None
    prov, model_info = found
    try:
        calc = model_info.calc_price(usage, prov, genai_request_timestamp=datetime.now(tz=UTC))
    except (LookupError, ValueError):
        return None
    return Decimal(calc.total_price)


def _price(provider: str, model: str, usage: Any) -> float | None:
    total = _exact(provider, model, usage)
    return None if total is None else float(total)


UnitPrices = tuple[Decimal, Decimal, Decimal, Decimal]  # USD per input, cache-write, cache-read, output token


def _units_at(provider: str, model: str, n: int) -> UnitPrices | None:
    plain = _exact(provider, model, _usage(input_tokens=n))
    written = _exact(provider, model, _usage(input_tokens=n, cache_write_tokens=n))
    read = _exact(provider, model, _usage(input_tokens=n, cache_read_tokens=n))
    out = _exact(provider, model, _usage(input_tokens=n, output_tokens=n))
    if plain is None or written is None or read is None or out is None:
        return None
    return plain / n, written / n, read / n, (out - plain) / n


@lru_cache(maxsize=4096)
def _unit_prices(provider: str, model: str, bucket: int) -> UnitPrices | None:
    """Per-token prices that hold for every input size in ``(bucket / 2, bucket]``, or None when a
    price tier changes inside that range (such calls are priced by genai-prices directly)."""
    low = _units_at(provider, model, bucket // 2 + 1)
    return low if low is not None and low == _units_at(provider, model, bucket) else None


def cost_usd(provider: str, model: str | None, usage: UsageRecord) -> float | None:
    """USD the provider charges for ``usage`` (cache reads/writes and reasoning priced as billed).

    Prices are linear within a tier, so the per-token prices of the usage's size bucket give
    genai-prices' exact answer at a fraction of its cost; where a tier boundary falls inside the
    bucket, genai-prices prices the call itself.
    """
    if not model or _model_price(provider, model) is None:
        return None
    bucket = 1 << max(usage.input_tokens - 1, 0).bit_length()
    units = _unit_prices(provider, model, bucket)
    if units is None:
        return _price(
            provider,
            model,
            _usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                cache_read_tokens=usage.cache_read_tokens,
            ),
        )
    p_in, p_write, p_read, p_out = units
    plain = usage.input_tokens - usage.cache_write_tokens - usage.cache_read_tokens
    total = plain * p_in + usage.cache_write_tokens * p_write + usage.cache_read_tokens * p_read
    return float(total + usage.output_tokens * p_out)


def rates(provider: str, model: str | None, input_tokens: int = 1000) -> Rates | None:
    """Upper-bound micro-USD per input and output token at ``input_tokens``' price tier.

    Input is priced at the dearer of plain input and cache writes, so a reservation made with these
    rates covers what the call can really cost for the same token counts. The size is rounded up
    to a power of two: a tier only rises with size, so the rates still bound the cost, and the
    cache keeps hitting (a miss is ~0.2 ms of genai-prices work).
    """
    if not model:
        return None
    return _rates_at(provider, model, 1 << max(input_tokens - 1, 0).bit_length())


@lru_cache(maxsize=4096)
def _rates_at(provider: str, model: str, n: int) -> Rates | None:
    plain = _price(provider, model, _usage(input_tokens=n))
    if plain is None:
        return None
    written = _price(provider, model, _usage(input_tokens=n, cache_write_tokens=n)) or plain
    with_output = _price(provider, model, _usage(input_tokens=n, output_tokens=n)) or plain
    return Rates(
        input_micros=max(plain, written) * MICROS_PER_USD / n,
        output_micros=max(with_output - plain, 0.0) * MICROS_PER_USD / n,
    )
