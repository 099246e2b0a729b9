"""Prices: the fast per-bucket pricing equals genai-prices' own calculation, tiers included."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from bbnet.model import UsageRecord
from bbnet.prices import cost_usd, price_provider, rates

MODELS = [
    ("anthropic", "claude-sonnet-4-5-20250929"),  # long-context tier above 200k input
    ("openai", "gpt-4o"),
    ("openai", "o3"),
    ("google", "gemini-2.5-pro"),  # tiered at 200k
    ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
]


@st.composite
def usages(draw: st.DrawFn) -> tuple[str, str, int, int, int, int]:
    provider, model = draw(st.sampled_from(MODELS))
    inp = draw(
        st.one_of(st.integers(0, 4000), st.integers(0, 500_000), st.sampled_from([131_072, 200_000, 200_001]))
    )
    cw = draw(st.integers(0, inp // 3))
    cr = draw(st.integers(0, (inp - cw) // 2))
    return provider, model, inp, cw, cr, draw(st.integers(0, 40_000))


@settings(max_examples=400, deadline=None)
@given(usages())
def test_cost_equals_genai_prices(case: tuple[str, str, int, int, int, int]) -> None:
    provider, model, inp, cw, cr, out = case
    expected = calc_price(
        Usage(input_tokens=inp, output_tokens=out, cache_write_tokens=cw, cache_read_tokens=cr),
        model,
        provider_id=price_provider(provider),
    ).total_price
    record = UsageRecord("b", "a", provider, model, inp, out, cw, cr)
    assert cost_usd(provider, model, record) == pytest.approx(float(expected), rel=1e-12, abs=1e-15)


def test_unknown_model_is_unpriced_not_free() -> None:
    record = UsageRecord("b", "a", "openai", "no-such-model", 10, 10)
    assert cost_usd("openai", "no-such-model", record) is None
    assert cost_usd("openai", None, record) is None
    assert rates("openai", "no-such-model") is None


def test_rates_bound_the_real_cost() -> None:
    r = rates("anthropic", "claude-sonnet-4-5-20250929", 1500)
    assert r is not None
    worst = UsageRecord(
        "b", "a", "anthropic", "claude-sonnet-4-5-20250929", 1500, 700, cache_write_tokens=1500
    )
    cost = cost_usd("anthropic", "claude-sonnet-4-5-20250929", worst)
    assert cost is not None and cost * 1e6 <= 1500 * r.input_micros + 700 * r.output_micros + 1e-6
