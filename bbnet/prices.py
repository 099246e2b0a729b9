"""Prices from genai-prices: the cost of recorded usage and projected per-token rates.

Unknown models give ``None`` — reported as unpriced, never as $0. genai-prices is imported on
first use: it costs ~50 ms, and CLI commands that price nothing should not pay it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from bbnet.model import MICROS_PER_USD, Rates, UsageRecord
from bbnet.providers import BUILTIN

_PRICE_PROVIDER = {p.key: p.price_provider for p in BUILTIN}


def price_provider(provider: str) -> str:
    return _PRICE_PROVIDER.get(provider, provider)


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


def _price(provider: str, model: str, usage: Any) -> float | None:
    found = _model_price(provider, model)
    if found is None:
        return None
    prov, model_info = found
    try:
        calc = model_info.calc_price(usage, prov, genai_request_timestamp=datetime.now(tz=UTC))
    except (LookupError, ValueError):
        return None
    return float(calc.total_price)


def cost_usd(provider: str, model: str | None, usage: UsageRecord) -> float | None:
    """USD the provider charges for ``usage`` (cache reads/writes and reasoning priced as billed)."""
    if not model:
        return None
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


@lru_cache(maxsize=1024)
def rates(provider: str, model: str | None, input_tokens: int = 1000) -> Rates | None:
    """Upper-bound micro-USD per input and output token at ``input_tokens``' price tier.

    Input is priced at the dearer of plain input and cache writes, so a reservation made with these
    rates covers what the call can really cost for the same token counts.
    """
    if not model:
        return None
    n = max(input_tokens, 1)
    plain = _price(provider, model, _usage(input_tokens=n))
    if plain is None:
        return None
    written = _price(provider, model, _usage(input_tokens=n, cache_write_tokens=n)) or plain
    with_output = _price(provider, model, _usage(input_tokens=n, output_tokens=n)) or plain
    return Rates(
        input_micros=max(plain, written) * MICROS_PER_USD / n,
        output_micros=max(with_output - plain, 0.0) * MICROS_PER_USD / n,
    )
