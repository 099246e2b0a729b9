"""Which bottles an exhausted pool stops (pure)."""

from __future__ import annotations

from bbnet.model import PoolView
from enforcer.controller import cut_reason, targets

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


def _room(used: int, limit: int = 12_000) -> PoolView:
    return PoolView("bottle:web", "anthropic", "tokens", "total", 0.0, limit, used, 0)


def test_a_spent_pool_always_cuts() -> None:
    assert (
        cut_reason(_room(12_000), 10)
        == "budget exhausted: bottle:web anthropic used 12000 of 12000 tokens (total)"
    )
    assert cut_reason(_room(12_500), None) is not None


def test_room_for_the_smallest_recent_call_keeps_the_bottle_open() -> None:
    assert cut_reason(_room(4_293), 5_100, needed=9_420) is None  # issue 13: one call too big is not a cutoff
    assert cut_reason(_room(6_900), 5_100) is None  # exactly its smallest call left


def test_less_than_the_smallest_recent_call_cuts_and_says_so() -> None:
    assert cut_reason(_room(7_000), 5_100, needed=5_200) == (
        "budget exhausted: bottle:web anthropic used 7000 of 12000 tokens (total); its smallest recent call needs 5,100"
    )


def test_with_no_recent_call_the_denied_call_decides() -> None:
    assert cut_reason(_room(4_293), None, needed=9_420) == (
        "budget exhausted: bottle:web anthropic used 4293 of 12000 tokens (total); "
        "its next call needs ~9,420 and it has no recent call to go by"
    )
