"""Soft limits: which thresholds a pool has, when they are crossed, what an alert says (pure)."""

from __future__ import annotations

import json

import pytest

from bbnet.limits import SettingsError
from bbnet.model import PoolView
from bbnet.settings import parse
from bbnet.soft_limits import Alert, crossed, key_of, thresholds_for

SETTINGS = parse(
    "soft_limits: [50, 80, 95]\n"
    "budget: {anthropic: {limit: 1000, soft_limits: [90]}, openai: 500}\n"
    "bottle_defaults: {anthropic: {limit: 100, soft_limits: []}}\n"
    "usd: {global: 20, soft_limits: [75, 25]}\n"
)


def pool(scope: str = "bottle:a", provider: str = "anthropic", unit: str = "tokens", limit: int = 1000,
         used: int = 0, start: float = 1_764_547_200.0) -> PoolView:  # fmt: skip
    return PoolView(scope, provider, unit, "month", start, limit, used, 0)


def test_thresholds_come_from_the_entry_else_the_default() -> None:
    assert thresholds_for(SETTINGS, pool("global", "anthropic")) == [90]
    assert thresholds_for(SETTINGS, pool("global", "openai")) == [50, 80, 95]  # a plain number: the default
    assert thresholds_for(SETTINGS, pool("bottle:a", "anthropic")) == []  # its entry turns them off
    assert thresholds_for(SETTINGS, pool("bottle:a", "openai")) == [50, 80, 95]
    assert thresholds_for(SETTINGS, pool("agent:a/x", "anthropic")) == [50, 80, 95]
    assert thresholds_for(SETTINGS, pool("global", "*", "usd")) == [25, 75]  # sorted
    assert thresholds_for(SETTINGS, pool("bottle:a", "*", "usd")) == [25, 75]
    assert thresholds_for(parse(""), pool()) == []  # none unless asked for


@pytest.mark.parametrize(
    ("used", "due"),
    [
        (0, []),
        (499, []),
        (500, [50]),
        (799, [50]),
        (800, [50, 80]),
        (949, [50, 80]),
        (950, [50, 80, 95]),
        (5000, [50, 80, 95]),
    ],
)
def test_crossed_at_exactly_the_percent(used: int, due: list[int]) -> None:
    assert [a.threshold for a in crossed(pool(used=used), [50, 80, 95], set())] == due


def test_each_alert_once_per_pool_and_period() -> None:
    first = crossed(pool(used=850), [50, 80, 95], set())
    raised = {a.key for a in first}
    assert crossed(pool(used=990), [50, 80, 95], raised)[0].threshold == 95  # only the new one
    assert crossed(pool(used=850), [50, 80, 95], raised) == []
    later = pool(used=850, start=1_767_225_600.0)  # the next period: due again
    assert [a.threshold for a in crossed(later, [50, 80, 95], raised)] == [50, 80]
    other = pool("bottle:b", used=850)
    assert len(crossed(other, [50, 80, 95], raised)) == 2


def test_a_pool_with_no_limit_raises_nothing() -> None:
    assert crossed(pool(limit=0, used=10), [50], set()) == []


def test_payload_and_its_key_round_trip() -> None:
    usd = Alert(pool("agent:a/x", "*", "usd", limit=20_000_000, used=16_500_000), 80)
    body = usd.payload()
    assert body == {"event": "soft_limit", "scope": "agent:a/x", "bottle": "a", "provider": "*", "unit": "usd",
                    "period": "month", "period_start": 1_764_547_200.0, "limit": 20.0, "used": 16.5,
                    "percent": 82.5, "threshold": 80}  # fmt: skip
    assert key_of(json.loads(json.dumps(body))) == usd.key
    assert Alert(pool("global", used=500), 50).payload()["bottle"] is None
    assert Alert(pool(used=500), 50).payload()["limit"] == 1000  # tokens stay whole
    assert key_of({"scope": "global"}) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("soft_limits: [50, 50]", "soft_limits: each soft limit"),
        ("soft_limits: [0]", "soft_limits.0: Input should be greater than or equal to 1"),
        (
            "budget: {openai: {limit: 5, soft_limits: [101]}}",
            "budget.openai.soft_limits.0: Input should be less",
        ),
        ("webhook: {url: 'ftp://user:hunter2@x/'}", "webhook.url: expected an http:// or https:// URL"),
        ("webhook: {url: 'http://x/', attempts: 0}", "webhook.attempts"),
        (
            "metrics: {listen: 'localhost:9464'}",
            "metrics.listen: expected the metrics listener as ADDRESS:PORT",
        ),
        ("metrics: {listen: '127.0.0.1:99999'}", "metrics.listen: expected the metrics listener"),
        ("metrics: {port: 9464}", "metrics.port: unknown key"),
    ],
)
def test_bad_settings_are_one_clear_error(text: str, error: str) -> None:
    with pytest.raises(SettingsError) as e:
        parse(text, "s.yml")
    assert str(e.value).startswith(f"s.yml: {error}"), str(e.value)
    assert "hunter2" not in str(e.value)


def test_metrics_and_webhook_settings() -> None:
    s = parse("metrics: {listen: '[::1]:9100'}\nwebhook: {url: 'https://h.example/x', timeout: 2}")
    assert s.metrics.enabled and s.metrics.address() == ("::1", 9100)
    assert s.webhook is not None and (s.webhook.timeout, s.webhook.attempts) == (2, 3)
    assert parse("").metrics.address() == ("127.0.0.1", 9464) and parse("").webhook is None
