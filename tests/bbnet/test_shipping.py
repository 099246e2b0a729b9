"""The pure part of shipping usage to the fleet database (bbnet/shipping.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

from bbnet import shipping
from bbnet.schema import MIGRATIONS
from bbnet.store import _statements


def row(i: int, node: str | None = "a") -> dict[str, Any]:
    values: dict[str, Any] = {c: 0 for c in shipping.COLUMNS}
    return {**values, "id": i, "key": f"k{i}", "bottle": "b", "agent": "x", "provider": "p", "node": node}


def test_a_batch_runs_from_the_watermark_to_its_last_row() -> None:
    b = shipping.batch(7, [row(8), row(9)], "a")
    assert b is not None and (b.after, b.upto, b.keys) == (7, 9, ("k8", "k9"))
    assert shipping.batch(7, [], "a") is None and shipping.caught_up(None)


def test_a_row_from_before_v7_takes_the_hosts_node() -> None:
    b = shipping.batch(0, [row(1, node=None), row(2, node="old")], "a")
    assert b is not None and [r[-1] for r in b.rows] == ["a", "old"]


def test_caught_up_only_after_a_short_batch() -> None:
    full = shipping.batch(0, [row(i) for i in range(1, shipping.BATCH_ROWS + 1)], "a")
    short = shipping.batch(0, [row(1)], "a")
    assert not shipping.caught_up(full) and shipping.caught_up(short)


def test_a_recreated_ledger_ships_from_its_start() -> None:
    assert shipping.start_after(5, 9) == 5 and shipping.start_after(9, 9) == 9
    assert shipping.start_after(10, 9) == 0  # ids began again below the watermark


def test_collisions_are_other_nodes_keys_only() -> None:
    b = shipping.batch(0, [row(1), row(2)], "a")
    assert b is not None
    assert shipping.collisions(b, {"k1": "a", "k2": "b", "k3": "c"}) == ["k2"]


def test_the_insert_fits_the_schema_and_skips_a_key_there() -> None:
    conn = sqlite3.connect(":memory:")
    for script in MIGRATIONS:
        for statement in _statements(script):
            conn.execute(statement)
    b = shipping.batch(0, [row(1), row(2)], "a")
    assert b is not None
    flat = [v for r in b.rows for v in r]
    assert sorted(k for (k,) in conn.execute(shipping.insert_sql(2), flat)) == ["k1", "k2"]
    assert conn.execute(shipping.insert_sql(2), flat).fetchall() == []
