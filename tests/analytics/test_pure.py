"""The pure parts: WHEN parsing, --by validation, query building, burn and projection arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.budgets import Burn, ancestry, period_end, pool_burn
from analytics.errors import ReportError
from analytics.queries import COST_COLUMNS, COST_MEASURES, Filters, aggregate, parse_by, snapshot
from analytics.render import bar, chart
from analytics.table import Series
from analytics.when import parse_when, window

NOW = datetime(2025, 3, 15, 12, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("30m", NOW - 1800),
        ("1h", NOW - 3600),
        ("7d", NOW - 7 * 86400),
        ("2w", NOW - 14 * 86400),
        ("2025-03-01", datetime(2025, 3, 1, tzinfo=UTC).timestamp()),
        ("2025-03-01T08:15", datetime(2025, 3, 1, 8, 15, tzinfo=UTC).timestamp()),
        ("2025-03-01T08:15Z", datetime(2025, 3, 1, 8, 15, tzinfo=UTC).timestamp()),
        ("2025-03-01T10:15+02:00", datetime(2025, 3, 1, 8, 15, tzinfo=UTC).timestamp()),
    ],
)
def test_when_forms(text: str, expected: float) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "1y", "-1h", "1.5h", "2025-02-30", "h1", "7 d"])
def test_bad_when_names_the_option_and_value(text: str) -> None:
    with pytest.raises(ReportError, match=rf"invalid --until {text!r}"):
        parse_when(text, NOW, "--until")


def test_window_must_be_ordered() -> None:
    assert window("2d", "1d", NOW) == (NOW - 2 * 86400, NOW - 86400)
    assert window(None, None, NOW) == (None, None)
    with pytest.raises(ReportError, match="is not before"):
        window("2025-03-02", "2025-03-01", NOW)


def test_by_keys_are_checked() -> None:
    assert parse_by("bottle, model,day") == ("bottle", "model", "day")
    for bad in ("bottle;drop table usage", "Bottle", "bottle,,model", "cost"):
        with pytest.raises(ReportError, match="invalid --by"):
            parse_by(bad)


def test_user_values_travel_as_parameters() -> None:
    filters = Filters(since=1.0, until=2.0, bottle="b1")
    query = snapshot(filters, COST_COLUMNS)
    assert query.params == (1.0, 2.0, "b1") and "b1" not in query.sql
    ranked = aggregate(("bottle", "day"), COST_MEASURES, top=7, rank_by="cost_usd")
    assert ranked.params == (7,) and "LIMIT ?" in ranked.sql and "ORDER BY cost_usd DESC" in ranked.sql
    with pytest.raises(ReportError, match="cannot rank by"):
        aggregate(("bottle",), COST_MEASURES, rank_by="1; drop")


def test_ancestry_and_period_end() -> None:
    parents = {"c": "b", "b": "a", "a": None, "x": "y", "y": "x"}
    assert ancestry("c", parents) == ["c", "b", "a"]
    assert ancestry("x", parents) == ["x", "y"]  # a cycle stops
    march = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    assert period_end("month", march) == datetime(2025, 4, 1, tzinfo=UTC).timestamp()
    assert period_end("day", march) == march + 86400
    assert period_end("total", march) is None


def burn_of(used: int, reserved: int, hour: int, day: int, period: str = "total") -> tuple[str, float | None]:
    burns = [Burn("b", "a", "openai", hour, day, hour * 10, day * 10)]
    pool = pool_burn("bottle:b", "openai", "tokens", period, 1000, used, reserved, burns, {"b": None}, NOW)
    return pool.status, pool.exhausts_at


def test_projection_statuses() -> None:
    assert burn_of(1000, 0, 5, 5) == ("exhausted", None)
    assert burn_of(900, 100, 5, 5) == ("full", None)
    assert burn_of(100, 0, 0, 0) == ("idle", None)
    assert burn_of(100, 0, 300, 480) == ("burning", NOW + 900 / 300 * 3600)
    assert burn_of(100, 0, 0, 480) == ("burning", NOW + 900 / 20 * 3600)  # 24 h average when the hour is idle
    assert burn_of(100, 0, 1, 24, period="day") == ("resets first", None)


def test_other_providers_and_bottles_do_not_burn_a_pool() -> None:
    burns = [Burn("other", "a", "openai", 50, 50, 0, 0), Burn("b", "a", "anthropic", 50, 50, 0, 0)]
    pool = pool_burn(
        "bottle:b", "openai", "tokens", "total", 1000, 0, 0, burns, {"b": None, "other": None}, NOW
    )
    assert (pool.burn_1h, pool.status) == (0.0, "idle")


def test_chart_bars_scale_to_the_peak() -> None:
    assert bar(10, 10, 8) == "█" * 8
    assert bar(5, 10, 8) == "█" * 4
    assert bar(1, 64, 8) == "▏"
    assert bar(0, 10, 8) == ""
    text = chart(Series("tokens", "day", (("2025-03-01", 50.0), ("2025-03-02", 100.0))), width=10)
    assert text.splitlines() == [
        "tokens per day (UTC)",
        "       2025-03-01 │█████      50",
        "       2025-03-02 │██████████ 100",
    ]
