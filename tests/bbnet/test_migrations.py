"""Opening an older ledger upgrades it in place without losing rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bbnet.ledger import Ledger, LedgerError
from bbnet.schema import MIGRATIONS, SCHEMA_VERSION
from bbnet.store import _statements


def _make_v1(path: Path) -> None:
    conn = sqlite3.connect(path)
    for stmt in _statements(MIGRATIONS[0]):
        conn.execute(stmt)
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
    conn.commit()
    conn.close()


def test_v1_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _make_v1(db)
    with Ledger.open(db) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        rows = ledger.usage(limit=1000)
        assert len(rows) == 50
        assert [r["input_tokens"] for r in rows] == list(range(50))
        for r in rows:
            expected = None if r["cost_usd"] is None else round(r["cost_usd"] * 1_000_000)
            assert r["cost_micros"] == expected
        assert ledger.get_bottle("a") is not None
    with Ledger.open(db) as again:  # idempotent: a second open changes nothing
        assert again.schema_version() == SCHEMA_VERSION
        assert len(again.usage(limit=1000)) == 50


def test_newer_ledger_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    Ledger.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer than this bbnet"):
        Ledger.open(db)
