"""The pure core: tally windows, governing pool, projection, sort, filter, formatting."""

from __future__ import annotations

import pytest

from bbnet.model import Bottle, DesiredState, PoolView
from dashboard import fmt
from dashboard.rows import (
    SORT_ORDER,
    build_rows,
    filter_rows,
    governing_pool,
    index_pools,
    limiting_pools,
    sort_rows,
)
from dashboard.tally import DAY, HOUR, RECENT_CALLS, Call, Tally

NOW = 1_000_000.0


def call(i: int, bottle: str, tokens: int, ts: float, provider: str = "anthropic", agent: str = "a") -> Call:
    return Call(i, ts, bottle, agent, provider, "m", tokens, tokens * 10, 200, False)


def pool(scope: str, used: int, limit: int, provider: str = "anthropic", reserved: int = 0) -> PoolView:
    return PoolView(scope, provider, "tokens", "total", 0.0, limit, used, reserved)


def test_tally_totals_recent_calls_and_duplicate_ids() -> None:
    tally = Tally()
    calls = [call(i, "ta", 10, NOW - 100 + i) for i in range(1, RECENT_CALLS + 6)]
    assert tally.add(calls, NOW) == {"ta"}
    assert tally.add(calls[:3], NOW) == set()  # already seen: not counted twice
    usage = tally.usage("ta")
    assert usage is not None
    assert (usage.tokens, usage.calls, usage.last_call) == (10 * len(calls), len(calls), calls[-1].ts)
    assert [c.id for c in usage.recent] == [c.id for c in calls[-RECENT_CALLS:]]
    assert tally.usage("nobody") is None


def test_tally_burn_windows_age_out() -> None:
    tally = Tally()
    tally.add(
        [
            call(1, "ta", 1000, NOW - DAY - 1),  # older than a day: totals only
            call(2, "ta", 100, NOW - 2 * HOUR),
            call(3, "ta", 10, NOW - 60),
            call(4, "tb", 5, NOW - 30, provider="openai"),
        ],
        NOW,
    )
    burns = {(b.bottle, b.provider): b for b in tally.burns(NOW)}
    assert (burns["ta", "anthropic"].tokens_1h, burns["ta", "anthropic"].tokens_24h) == (10, 110)
    assert burns["ta", "anthropic"].micros_1h == 100
    assert burns["tb", "openai"].tokens_1h == 5
    later = {(b.bottle, b.provider): b for b in tally.burns(NOW + HOUR)}
    assert later["ta", "anthropic"].tokens_1h == 0
    assert later["ta", "anthropic"].tokens_24h == 110
    assert tally.burns(NOW + 2 * DAY) == []
    assert tally.usage("ta").tokens == 1110  # type: ignore[union-attr]


def test_governing_pool_is_the_one_nearest_to_stopping_the_bottle() -> None:
    parents = {"team": None, "ta": "team"}
    pools = [
        pool("global", 100, 1000),
        pool("bottle:team", 50, 100),  # 50 %
        pool("bottle:ta", 10, 100),
        pool("agent:ta/a", 90, 100),  # 90 %: an agent of ta
        pool("bottle:ta", 99, 100, provider="openai"),  # 99 %, but ta never used openai
        pool("agent:tb/a", 100, 100),  # another bottle's agent
    ]
    limiting = limiting_pools("ta", index_pools(pools), parents)
    assert [p.scope for p in limiting] == ["global", "bottle:team", "bottle:ta", "bottle:ta", "agent:ta/a"]
    assert governing_pool("ta", ("anthropic",), limiting) == pools[3]
    assert governing_pool("ta", ("anthropic", "openai"), limiting) == pools[4]
    assert governing_pool("ta", (), limiting) == pools[4]  # no calls yet: every pool may stop it
    tie = [pool("global", 50, 100), pool("bottle:ta", 5, 10)]
    assert governing_pool("ta", (), limiting_pools("ta", index_pools(tie), parents)) == tie[1]
    assert governing_pool("team", (), []) is None


def test_build_rows_projects_exhaustion_from_everyone_drawing_on_the_pool() -> None:
    bottles = [Bottle("team"), Bottle("ta", parent="team"), Bottle("tb", parent="team"), Bottle("idle")]
    pools = [pool("bottle:team", 400, 1000), pool("bottle:tb", 0, 1_000_000)]
    tally = Tally()
    tally.add([call(1, "ta", 300, NOW - 60), call(2, "tb", 300, NOW - 30)], NOW)
    states = {"tb": DesiredState("tb", "cutoff", "budget exhausted", "controller")}
    rows = {r.name: r for r in build_rows(bottles, states, pools, tally.usage, tally.burns(NOW), NOW)}
    ta = rows["ta"]
    assert ta.pool == pools[0] and ta.spent == pytest.approx(0.4)
    assert ta.tokens_per_hour == 300
    # team's pool burns 600/h (ta and tb), 600 left: one hour
    assert ta.burn is not None and ta.burn.exhausts_at == pytest.approx(NOW + HOUR)
    assert rows["tb"].pool == pools[0]  # 40 % of team's beats 0 % of its own
    assert (rows["tb"].state, rows["tb"].reason) == ("cutoff", "budget exhausted")
    assert (rows["idle"].pool, rows["idle"].spent, rows["idle"].tokens, rows["idle"].last_call) == (
        None, None, 0, None,
    )  # fmt: skip


def test_sort_and_filter() -> None:
    bottles = [Bottle("alpha"), Bottle("beta", parent="alpha"), Bottle("gamma")]
    tally = Tally()
    tally.add([call(1, "beta", 500, NOW - 10), call(2, "gamma", 50, NOW - 5, provider="openai")], NOW)
    states = {"gamma": DesiredState("gamma", "cutoff")}
    rows = build_rows(bottles, states, [], tally.usage, tally.burns(NOW), NOW)
    assert [r.name for r in sort_rows(rows, "tokens", True)] == ["beta", "gamma", "alpha"]
    assert [r.name for r in sort_rows(rows, "last", True)] == ["gamma", "beta", "alpha"]
    assert [r.name for r in sort_rows(rows, "state", False)] == ["gamma", "alpha", "beta"]
    for key in SORT_ORDER:
        assert sorted(r.name for r in sort_rows(rows, key, False)) == ["alpha", "beta", "gamma"]
    with pytest.raises(ValueError, match="unknown sort key 'size'"):
        sort_rows(rows, "size", False)
    names = lambda text: [r.name for r in filter_rows(rows, text)]  # noqa: E731
    assert names("") == ["alpha", "beta", "gamma"]
    assert names("state:cut") == ["gamma"]
    assert names("cut off") == ["gamma"]
    assert names("openai") == ["gamma"]
    assert names("parent:alpha") == ["beta"]
    assert names("ALPHA") == ["alpha", "beta"]  # beta's parent is alpha
    assert names("alpha state:open") == ["alpha", "beta"]
    assert names("nothing") == []


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (999.6, "1k"),
        (1234, "1.23k"),
        (999_999, "1M"),
        (4_560_000, "4.56M"),
        (2e12, "2000G"),
    ],
)
def test_tokens_fit_narrow_columns(n: float, text: str) -> None:
    assert fmt.tokens(n) == text


def test_usd_durations_and_bars() -> None:
    assert [fmt.usd(m) for m in (0, 4200, 1_230_000, 1_234_000_000)] == ["$0", "$0.0042", "$1.23", "$1,234"]
    assert [fmt.duration(s) for s in (-5, 45, 600, 7200, 5 * 86400)] == ["0s", "45s", "10m", "2h", "5d"]
    assert fmt.ago(None, NOW) == "-"
    assert fmt.bar(0.0, 5) == "░░░░░"
    assert fmt.bar(0.001, 5) == "█░░░░"  # any spending shows
    assert fmt.bar(0.5, 4) == "██░░"
    assert fmt.bar(3.0, 5) == "█████"
    assert fmt.percent(0.384) == "38%"
    assert (
        fmt.pool_label(PoolView("bottle:ta", "openai", "usd", "day", 0.0, 1, 0, 0))
        == "bottle:ta openai usd/day"
    )
