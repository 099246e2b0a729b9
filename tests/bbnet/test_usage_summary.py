"""The ledger's usage aggregates: equal to summing the rows, bounded by id, answered from indexes."""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bbnet.audit import LATEST_USAGE_SQL, USAGE_SINCE_SQL, USAGE_TOTALS_SQL, UsageTotals
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Bottle, UsageRecord

T0 = 1_767_268_800.0
MODELS = {"anthropic": ("claude-sonnet-4-5", "no-such-model"), "openai": ("gpt-4o", "gpt-4o-mini")}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """Three bottles, 150 calls in shuffled time order, a fifth of them of an unpriced model."""
    rnd = random.Random(7)
    with Ledger.open(tmp_path / "ledger.db") as led:
        for name in ("ta", "tb", "tc"):
            led.add_bottle(Bottle(name))
        for k in range(150):
            provider = rnd.choice(("anthropic", "openai"))
            led.commit(
                f"k{k}",
                UsageRecord(
                    rnd.choice(("ta", "tb", "tc")), rnd.choice(("main", "sub")), provider,
                    MODELS[provider][k % 5 == 0 and provider == "anthropic"],
                    input_tokens=rnd.randrange(1, 5000), output_tokens=rnd.randrange(0, 900),
                    ts=T0 + rnd.uniform(0, 3 * 86400),
                ),
            )  # fmt: skip
        yield led


def _summed(rows: list[dict[str, Any]]) -> list[UsageTotals]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["bottle"], r["provider"]].append(r)
    return [
        UsageTotals(
            bottle,
            provider,
            calls=len(g),
            tokens=sum(r["input_tokens"] + r["output_tokens"] for r in g),
            micros=sum(r["cost_micros"] or 0 for r in g),
            unpriced=sum(r["cost_micros"] is None for r in g),
            last_ts=max(r["ts"] for r in g),
        )
        for (bottle, provider), g in sorted(groups.items())
    ]


def test_summary_equals_summing_every_row_up_to_the_bound(ledger: Ledger) -> None:
    rows = ledger.usage(limit=10_000)
    assert ledger.last_usage_id() == rows[-1]["id"] == 150
    summary = ledger.usage_summary(150)
    assert summary == _summed(rows)
    assert any(t.unpriced for t in summary) and any(t.micros for t in summary)
    assert ledger.usage_summary(60) == _summed(rows[:60])
    assert ledger.usage_summary(0) == []


def test_usage_since_is_the_rows_after_a_time_in_commit_order(ledger: Ledger) -> None:
    rows = ledger.usage(limit=10_000)
    since = T0 + 2 * 86400
    expected = [r for r in rows if r["ts"] > since and r["id"] <= 120]
    assert 0 < len(expected) < 120
    assert ledger.usage_since(since, 120) == expected
    boundary = rows[10]["ts"]
    assert rows[10] not in ledger.usage_since(boundary, 150)  # strictly after


def test_latest_usage_is_a_bottles_last_rows_oldest_first(ledger: Ledger) -> None:
    rows = ledger.usage(limit=10_000)
    of_tb = [r for r in rows if r["bottle"] == "tb"]
    assert ledger.latest_usage("tb", 150, 7) == of_tb[-7:]
    bound = of_tb[20]["id"]
    assert ledger.latest_usage("tb", bound, 5) == of_tb[16:21]
    assert ledger.latest_usage("tb", 150, 10_000) == of_tb
    assert ledger.latest_usage("nobody", 150, 5) == []
    with pytest.raises(LedgerError, match="invalid limit 0"):
        ledger.latest_usage("tb", 150, 0)


@pytest.mark.parametrize(
    ("sql", "args", "index"),
    [
        (USAGE_TOTALS_SQL, (1,), "USING COVERING INDEX usage_totals"),
        (USAGE_SINCE_SQL, (T0, 1), "USING INDEX usage_ts"),
        (LATEST_USAGE_SQL, ("tb", 1, 20), "USING INDEX usage_bottle_id"),
    ],
)
def test_each_aggregate_is_read_from_an_index_without_sorting_the_table(
    ledger: Ledger, sql: str, args: tuple[object, ...], index: str
) -> None:
    """On a big ledger a scan or a sort of every row is what made the dashboard slow to start."""
    conn = sqlite3.connect(ledger.path)
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    finally:
        conn.close()
    assert any(index in step for step in plan), plan
    if sql != USAGE_SINCE_SQL:  # the last day's rows (a small share) are put in id order
        assert not any("TEMP B-TREE" in step for step in plan), plan
