"""Every report's numbers against an independent plain-Python computation over the same calls, on
both backends (a SQLite file, a real PostgreSQL server read through DuckDB's postgres scanner)."""

from __future__ import annotations

import itertools

import pytest

from analytics import reports
from analytics.queries import BY_KEYS, Filters
from analytics.reader import open_ledger
from analytics.table import Cell, Table
from bbnet.ledger import Ledger
from bbnet.model import MICROS_PER_USD, Bottle, UsageRecord
from bbnet.pools import path_scopes, period_start
from tests.analytics.conftest import BOTTLES, Built, build
from tests.analytics.expected import cost_rows, price, usage_rows

PARENTS = dict(BOTTLES)
GROUPINGS = [
    combo
    for size in (1, 2, 3)
    for combo in itertools.combinations(BY_KEYS, size)
    if not ("hour" in combo and "day" in combo)
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The known ledger on each backend: every report here runs over both."""
    if request.param == "sqlite":
        return build(tmp_path_factory.mktemp("ledger") / "ledger.db")
    return build(request.getfixturevalue("pg_server").new_database())


@pytest.fixture
def empty_ledger(ledger_db: str) -> str:
    Ledger.open(ledger_db).close()
    return ledger_db


def keyed(table: Table, by: tuple[str, ...]) -> dict[tuple[Cell, ...], dict[str, Cell]]:
    out: dict[tuple[Cell, ...], dict[str, Cell]] = {}
    for record in table.records():
        out[tuple(record.pop(k) for k in by)] = record
    return out


@pytest.mark.parametrize("by", GROUPINGS, ids=",".join)
def test_usage_by_every_grouping_equals_plain_python(built: Built, by: tuple[str, ...]) -> None:
    with open_ledger(built.path) as reader:
        report = reports.usage(reader, by, Filters())
    assert keyed(report.main, by) == usage_rows(built.calls, by)


@pytest.mark.parametrize(
    "by", [("bottle",), ("model",), ("bottle", "model", "day"), ("agent", "hour")], ids=",".join
)
def test_cost_equals_genai_prices_per_call(built: Built, by: tuple[str, ...]) -> None:
    with open_ledger(built.path) as reader:
        report = reports.cost(reader, by, Filters())
    got, want = keyed(report.main, by), cost_rows(built.calls, by)
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key]["calls"] == row["calls"]
        assert got[key]["tokens"] == row["tokens"]
        assert got[key]["unpriced_calls"] == row["unpriced_calls"]
        assert got[key]["cost_usd"] == (
            None if row["cost_usd"] is None else pytest.approx(row["cost_usd"], rel=1e-9)
        )


def test_unpriced_models_are_listed_and_never_cost_zero(built: Built) -> None:
    unpriced = [c for c in built.calls if price(c) is None]
    assert unpriced, "the fixture must hold calls to an unpriced model"
    with open_ledger(built.path) as reader:
        report = reports.cost(reader, ("model",), Filters())
    listing, list_priced = report.extra
    assert list_priced.records() == []  # no subscription traffic in the fixture
    assert listing.records() == [
        {
            "provider": "anthropic",
            "model": "bbnet-test-unpriced",
            "calls": len(unpriced),
            "tokens": sum(c.tokens for c in unpriced),
        }
    ]
    by_model = keyed(report.main, ("model",))
    assert by_model[("bbnet-test-unpriced",)]["cost_usd"] is None
    assert all(by_model[k]["cost_usd"] for k in by_model if k != ("bbnet-test-unpriced",))


def test_window_bottle_and_top_filters(built: Built) -> None:
    since, until = built.now - 86400, built.now - 3600
    inside = [c for c in built.calls if c.ts is not None and since <= c.ts < until and c.bottle == "beta"]
    with open_ledger(built.path) as reader:
        window = reports.usage(reader, ("model",), Filters(since, until, "beta"))
        top = reports.cost(reader, ("bottle", "model"), Filters(), top=3)
    assert keyed(window.main, ("model",)) == usage_rows(inside, ("model",))
    ranked = sorted(
        ((v["cost_usd"], k) for k, v in cost_rows(built.calls, ("bottle", "model")).items() if v["cost_usd"]),
        reverse=True,
    )[:3]
    assert [(r["bottle"], r["model"]) for r in top.main.records()] == [k for _, k in ranked]
    assert [r["cost_usd"] for r in top.main.records()] == [pytest.approx(c, rel=1e-9) for c, _ in ranked]


def test_chart_series_sums_each_day(built: Built) -> None:
    with open_ledger(built.path) as reader:
        report = reports.usage(reader, ("bottle",), Filters(), chart=True)
    assert report.series is not None
    want = {day[0]: row["tokens"] for day, row in usage_rows(built.calls, ("day",)).items()}
    assert dict(report.series.points) == want
    assert [label for label, _ in report.series.points] == sorted(want, key=str)


def test_actions_timeline_in_order_with_reasons(built: Built) -> None:
    with open_ledger(built.path) as reader:
        timeline = reports.actions(reader, Filters())
        latest_two = reports.actions(reader, Filters(), top=2)
        beta = reports.actions(reader, Filters(bottle="beta"))
    rows = [(r["bottle"], r["action"], r["actor"], r["reason"], r["result"]) for r in timeline.main.records()]
    assert rows == list(built.actions)
    assert [r["id"] for r in latest_two.main.records()] == [r["id"] for r in timeline.main.records()][-2:]
    assert [r["action"] for r in beta.main.records()] == ["cutoff", "restore"]


def in_pool(call: UsageRecord, scope: str, provider: str) -> bool:
    parent = PARENTS[call.bottle]
    chain = [call.bottle, parent] if parent else [call.bottle]
    return scope in path_scopes(chain, call.agent) and provider in ("*", call.provider)


def charged(call: UsageRecord, unit: str) -> int:
    return call.tokens if unit == "tokens" else round((price(call) or 0) * MICROS_PER_USD)


def test_budgets_equal_ledger_counters_and_burn_from_calls(built: Built) -> None:
    now = max(c.ts or 0 for c in built.calls) + 1  # after every fixture call, however long building took
    with open_ledger(built.path) as reader:
        report = reports.budgets(reader, now)
    with Ledger.open(built.path, create=False) as ledger:
        pools = {(p.scope, p.provider, p.unit): p for p in ledger.pools(now)}
    rows = report.main.records()
    assert {(r["scope"], r["provider"], r["unit"]) for r in rows} == set(pools)
    assert any(built.reserved.values()) and any(
        v for (_, _, unit), v in built.reserved.items() if unit == "usd"
    )
    for row in rows:
        scope, provider, unit, period = (
            str(row["scope"]),
            str(row["provider"]),
            str(row["unit"]),
            str(row["period"]),
        )
        scale = MICROS_PER_USD if unit == "usd" else 1
        mine = [(c.ts or 0, charged(c, unit)) for c in built.calls if in_pool(c, scope, provider)]
        start = period_start(period, now)
        used = sum(amount for ts, amount in mine if ts >= start)
        last_hour = sum(amount for ts, amount in mine if ts > now - 3600)
        last_day = sum(amount for ts, amount in mine if ts > now - 86400)
        reserved = built.reserved.get((scope, provider, unit), 0)
        pool = pools[(scope, provider, unit)]
        assert (pool.used, pool.reserved) == (used, reserved)
        assert row["limit"] == pool.limit / scale
        assert row["used"] == used / scale
        assert row["reserved"] == reserved / scale
        assert row["remaining"] == pytest.approx((pool.limit - used - reserved) / scale)
        assert row["burn_per_hour_1h"] == pytest.approx(last_hour / scale)
        assert row["burn_per_hour_24h"] == pytest.approx(last_day / scale / 24)
    statuses = {r["scope"]: r["status"] for r in rows if r["unit"] == "tokens"}
    assert statuses["agent:gamma/coder"] == "exhausted"
    assert statuses["global"] == "burning"


def test_budgets_for_one_bottle_are_the_pools_on_its_path(built: Built) -> None:
    with open_ledger(built.path) as reader:
        report = reports.budgets(reader, built.now, bottle="beta")
    assert sorted({str(r["scope"]) for r in report.main.records()}) == [
        "bottle:alpha",
        "bottle:beta",
        "global",
    ]


def test_empty_ledger_gives_empty_reports(empty_ledger: str) -> None:
    with open_ledger(empty_ledger) as reader:
        usage = reports.usage(reader, ("bottle", "day"), Filters(), chart=True)
        cost = reports.cost(reader, ("model",), Filters(), top=5)
        budgets = reports.budgets(reader, 1e9)
        actions = reports.actions(reader, Filters())
    assert usage.main.rows == () and usage.series is not None and usage.series.points == ()
    assert cost.main.rows == () and cost.extra[0].rows == ()
    assert budgets.main.rows == () and actions.main.rows == ()


def test_subscription_traffic_is_listed_as_a_list_price_equivalent(empty_ledger: str) -> None:
    with Ledger.open(empty_ledger) as ledger:
        ledger.add_bottle(Bottle("sub"))
        calls = [
            UsageRecord("sub", "codex", "chatgpt", "gpt-5-codex", input_tokens=1000, output_tokens=100),
            UsageRecord("sub", "codex", "chatgpt", "gpt-5-codex", input_tokens=2000, output_tokens=50),
            UsageRecord("sub", "gemini", "code-assist", "gemini-2.5-pro", input_tokens=500, output_tokens=10),
            UsageRecord("sub", "api", "openai", "gpt-5", input_tokens=1000, output_tokens=100),
        ]
        costs = [ledger.commit(f"c{i}", call).cost_usd for i, call in enumerate(calls)]
    with open_ledger(empty_ledger) as reader:
        report = reports.cost(reader, ("provider",), Filters())
    _, list_priced = report.extra
    assert list_priced.name == "list_price_equivalents"
    got = {r["provider"]: r for r in list_priced.records()}
    assert got.keys() == {"chatgpt", "code-assist"}  # openai's own API is invoiced: not listed
    assert got["chatgpt"]["calls"] == 2
    assert got["chatgpt"]["cost_usd"] == pytest.approx(costs[0] + costs[1])  # type: ignore[operator]
    assert got["code-assist"]["cost_usd"] == pytest.approx(costs[2]) and costs[2]
