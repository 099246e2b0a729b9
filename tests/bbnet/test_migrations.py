"""Opening an older ledger upgrades it in place without losing rows, on both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from bbnet import pg
from bbnet.dialect import pg_schema
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Bottle, UsageRecord
from bbnet.schema import MIGRATIONS, SCHEMA_VERSION
from bbnet.store import _statements


@contextmanager
def raw(target: str) -> Iterator[Any]:
    """A plain connection to the ledger's file or database (autocommit, SQLite's placeholders)."""
    conn: Any = (
        pg.PgConnection(target) if pg.is_url(target) else sqlite3.connect(target, isolation_level=None)
    )
    try:
        yield conn
    finally:
        conn.close()


def _make_v1(target: str) -> None:
    with raw(target) as conn:
        for stmt in _statements(MIGRATIONS[0]):
            conn.execute(pg_schema(stmt) if pg.is_url(target) else stmt)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO bottles (name, created_at) VALUES ('a', 1.0)")
        for i in range(50):
            conn.execute(
                "INSERT INTO usage (key, ts, bottle, agent, provider, model, input_tokens, output_tokens,"
                " cache_write_tokens, cache_read_tokens, reasoning_tokens, cost_usd) VALUES"
                " (?, ?, 'a', 'x', 'anthropic', 'm', ?, 5, 0, 0, 0, ?)",
                (f"k{i}", 1000.0 + i, i, None if i % 10 == 0 else i * 0.001),
            )


def test_v1_ledger_is_upgraded_in_place(ledger_db: str) -> None:
    _make_v1(ledger_db)
    with Ledger.open(ledger_db) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        rows = ledger.usage(limit=1000)
        assert len(rows) == 50
        assert [r["input_tokens"] for r in rows] == list(range(50))
        for r in rows:
            expected = None if r["cost_usd"] is None else round(r["cost_usd"] * 1_000_000)
            assert r["cost_micros"] == expected
            assert r["node"] is None  # metered before v7: the node is not known
        assert ledger.get_bottle("a") is not None
    with Ledger.open(ledger_db) as again:  # idempotent: a second open changes nothing
        assert again.schema_version() == SCHEMA_VERSION
        assert len(again.usage(limit=1000)) == 50


def test_newer_ledger_is_refused(ledger_db: str) -> None:
    Ledger.open(ledger_db).close()
    with raw(ledger_db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(LedgerError, match="newer than this bbnet"):
        Ledger.open(ledger_db)


def test_postgresql_types_hold_what_sqlite_holds(pg_url: str) -> None:
    """Tokens and micro-USD beyond 32 bits, and timestamps to the microsecond, survive PostgreSQL."""
    Ledger.open(pg_url).close()
    with raw(pg_url) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'usage'"
            ).fetchall()
        )
    assert types["input_tokens"] == types["cost_micros"] == "bigint"
    assert types["ts"] == "double precision"
    with Ledger.open(pg_url) as ledger:
        ledger.add_bottle(Bottle("a"))
        ledger.commit(
            "big", UsageRecord("a", "x", "anthropic", "m", input_tokens=5_000_000_000, ts=1796298398.520173)
        )
        [row] = ledger.usage()
        assert (row["input_tokens"], row["ts"]) == (5_000_000_000, 1796298398.520173)
