"""`bbnet meter replay`: JSON lines that equal truth.jsonl, a table, and an idempotent backfill."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import typer
from typer.testing import CliRunner

from bbnet.ledger import Ledger
from bbnet.model import Bottle
from meter.cli import mount
from meter.replay import ROW_FIELDS
from tests.meter.recordings import HAR, TOKEN_FIELDS, truth


def meter_app() -> typer.Typer:
    app = typer.Typer()
    group = typer.Typer()
    mount(group)
    app.add_typer(group, name="meter")
    return app


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(meter_app(), ["meter", "replay", *args])
    return result.exit_code, result.stdout, result.stderr


def test_jsonl_rows_match_truth_in_order() -> None:
    code, out, _ = run(str(HAR))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    expected = truth()
    assert [r["index"] for r in rows] == list(range(len(expected)))
    for row, want in zip(rows, expected, strict=True):
        assert tuple(row) == ROW_FIELDS
        assert row["metered"] and not row["estimated"]
        assert {f: row[f] for f in (*TOKEN_FIELDS, "model", "provider", "family")} == {
            f: want[f] for f in (*TOKEN_FIELDS, "model", "provider", "family")
        }


def test_non_llm_entries_are_reported_unmetered(tmp_path: Path) -> None:
    har = json.loads(HAR.read_text())
    first = har["log"]["entries"][0]
    other = json.loads(json.dumps(first))
    other["request"]["url"] = "https://example.com/v1/messages"
    har["log"]["entries"] = [other, first]
    path = tmp_path / "mixed.har"
    path.write_text(json.dumps(har))
    code, out, _ = run(str(path))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0] == {"index": 0, "metered": False}
    assert rows[1]["metered"] and rows[1]["input_tokens"] == truth()[0]["input_tokens"]


def test_table_format_lists_every_entry() -> None:
    code, out, _ = run(str(HAR), "--format", "table")
    assert code == 0
    assert "claude-sonnet-4-5-20250929" in out
    assert out.count("\n") > len(truth())


def test_unreadable_inputs_fail_with_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.har"
    bogus.write_text("not a har")
    code, _, err = run(str(bogus))
    assert code == 2 and "is not a HAR file or mitmproxy flow dump" in err
    code, _, err = run(str(tmp_path / "missing.har"))
    assert code == 2 and "cannot read" in err


def test_backfill_records_each_entry_once(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("replayed"))
    code, _, err = run(str(HAR), "--db", str(db))
    assert code == 2 and "--db needs --bottle" in err
    code, _, err = run(str(HAR), "--db", str(db), "--bottle", "nobody")
    assert code == 2 and "no bottle named 'nobody'" in err
    for new_rows in (len(truth()), 0):
        code, _, err = run(str(HAR), "--db", str(db), "--bottle", "replayed")
        assert code == 0, err
        assert f"recorded {new_rows} new usage rows" in err
    with sqlite3.connect(db) as conn:
        count, total_in = conn.execute("SELECT count(*), sum(input_tokens) FROM usage").fetchone()
    assert count == len(truth())
    assert total_in == sum(t["input_tokens"] for t in truth())
