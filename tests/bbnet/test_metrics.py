"""The metrics registry over a real ledger file, scraped over HTTP from a real listener and read
back with prometheus_client's own text parser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet import metrics
from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, Outcome, ReserveRequest, UsageRecord
from bbnet.names import Scope
from tests.conftest import scrape_metrics

MODEL = "claude-sonnet-4-5-20250929"


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
def served(db: Path) -> Iterator[tuple[Ledger, str]]:
    m = metrics.enable()
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("a"))
        m.registry.register(metrics.LedgerGauges(ledger))
        listener = metrics.Listener(m, "127.0.0.1", 0)
        try:
            yield metrics.instrument(ledger, m), listener.address
        finally:
            listener.close()
            metrics.disable()


def req(key: str, out: int = 100) -> ReserveRequest:
    return ReserveRequest(key, "a", "agent1", "anthropic", MODEL, 100, out)


def usage(inp: int, out: int, **kw: object) -> UsageRecord:
    return UsageRecord("a", "agent1", "anthropic", MODEL, input_tokens=inp, output_tokens=out, latency_ms=250.0,
                       **kw)  # type: ignore[arg-type]  # fmt: skip


def test_counters_match_the_ledger(served: tuple[Ledger, str]) -> None:
    ledger, address = served
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000))
    assert ledger.reserve(req("k1")).outcome is Outcome.ALLOW
    assert ledger.reserve(req("k2")).outcome is Outcome.ALLOW
    in_flight = scrape_metrics(address)
    assert value(in_flight, "bbnet_reservations_in_flight") == 2
    assert value(in_flight, "bbnet_pool_reserved", scope="bottle:a") == 400
    ledger.commit("k1", usage(120, 80, cache_read_tokens=30))
    ledger.commit("k1", usage(120, 80))  # a retried commit changes nothing, counts nothing
    ledger.commit("k2", usage(90, 10, estimated=True))
    assert ledger.reserve(req("k3", out=5000)).outcome is Outcome.DEGRADE
    ledger.release("k3")
    assert ledger.reserve(req("k4", out=1)).outcome is Outcome.ALLOW
    assert ledger.sweep_expired(now=2e9)  # its meter "died": billed as a lost call

    s = scrape_metrics(address)
    rows = ledger.usage()
    assert value(s, "bbnet_calls_total", bottle="a", provider="anthropic") == len(rows) - 1  # lost: apart
    assert value(s, "bbnet_calls_total", estimated="true") == 1
    assert value(s, "bbnet_lost_calls_total", bottle="a") == 1
    metered = [r for r in rows if not r["lost"]]
    assert value(s, "bbnet_tokens_total", type="input") == sum(r["input_tokens"] for r in metered) == 210
    assert value(s, "bbnet_tokens_total", type="output") == sum(r["output_tokens"] for r in metered) == 90
    assert value(s, "bbnet_tokens_total", type="cache_read") == 30
    assert value(s, "bbnet_cost_usd_total", bottle="a") == pytest.approx(sum(r["cost_usd"] for r in metered))
    assert value(s, "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 2  # noqa: S106
    assert value(s, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 90  # noqa: S106
    assert value(s, "gen_ai_client_operation_duration_seconds_sum") == pytest.approx(0.5)
    for outcome, n in (("allow", 3), ("degrade", 1), ("deny", 0)):
        assert value(s, "bbnet_reservations_total", outcome=outcome) == n, outcome
    for op, n in (("reserve", 4), ("commit", 3), ("release", 1), ("sweep", 1)):
        assert value(s, "bbnet_ledger_operation_duration_seconds_count", op=op) == n, op
    [pool] = ledger.pools()
    assert value(s, "bbnet_pool_used", scope="bottle:a", unit="tokens") == pool.used
    assert value(s, "bbnet_pool_limit", scope="bottle:a") == 1000
    assert value(s, "bbnet_reservations_in_flight") == 0


def test_deny_and_hooks(served: tuple[Ledger, str]) -> None:
    ledger, address = served
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "usd", 1_000_000, "month"))  # USD: in dollars
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 50))
    assert ledger.reserve(req("k1")).outcome is Outcome.DENY
    metrics.deny("BUDGET_DENIED", "anthropic")
    metrics.refusal("UNMETERED")
    metrics.cutoff("a", "freeze", 0.08)
    metrics.soft_limit(80)
    metrics.webhook(False)
    s = scrape_metrics(address)
    assert value(s, "bbnet_reservations_total", outcome="deny") == 1
    assert value(s, "bbnet_denies_total", code="BUDGET_DENIED", provider="anthropic") == 1
    assert value(s, "bbnet_unmetered_refusals_total", code="UNMETERED") == 1
    assert value(s, "bbnet_cutoffs_total", bottle="a", policy="freeze") == 1
    assert value(s, "bbnet_cutoff_latency_seconds_bucket", policy="freeze", le="0.1") == 1
    assert value(s, "bbnet_cutoff_latency_seconds_bucket", policy="freeze", le="0.075") == 0
    assert value(s, "bbnet_soft_limit_alerts_total", threshold="80") == 1
    assert value(s, "bbnet_webhook_deliveries_total", result="failed") == 1
    assert value(s, "bbnet_pool_limit", unit="usd") == 1.0


def test_hooks_are_noops_while_off() -> None:
    metrics.disable()
    metrics.deny("BUDGET_DENIED", "anthropic")  # nothing to count into, nothing raised
    m = metrics.enable()
    metrics.disable()
    metrics.cutoff("a", "cutoff", 0.1)
    assert m.registry.get_sample_value("bbnet_cutoffs_total", {"bottle": "a", "policy": "cutoff"}) is None
