"""Which bottles an exhausted pool stops (pure)."""

from __future__ import annotations

from bbnet.model import PoolView
from enforcer.controller import targets

PARENTS: dict[str, str | None] = {"team": None, "web": "team", "api": "team", "solo": None}


def _pool(scope: str, provider: str = "*") -> PoolView:
    return PoolView(scope, provider, "tokens", "total", 0.0, 100, 100, 0)


def test_agent_pool_stops_no_bottle() -> None:
    assert targets(_pool("agent:web/coder"), "web", PARENTS) == []


def test_every_provider_pool_stops_every_bottle_under_it() -> None:
    assert targets(_pool("global"), "web", PARENTS) == ["api", "solo", "team", "web"]
    assert targets(_pool("bottle:team"), "web", PARENTS) == ["api", "team", "web"]
    assert targets(_pool("bottle:web"), "web", PARENTS) == ["web"]


def test_one_provider_pool_stops_the_bottle_that_hit_it() -> None:
    assert targets(_pool("global", "anthropic"), "api", PARENTS) == ["api"]
    assert targets(_pool("bottle:team", "openai"), "web", PARENTS) == ["web"]


def test_unknown_bottle_is_ignored() -> None:
    assert targets(_pool("bottle:team"), "ghost", PARENTS) == []
