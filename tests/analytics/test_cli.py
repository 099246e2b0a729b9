"""`bbnet report` end to end: every format round-trips; bad options are one line and exit 2."""

from __future__ import annotations

import csv
import io
import json
import secrets
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from analytics import reports
from analytics.cli import mount
from analytics.queries import Filters
from analytics.reader import open_ledger
from analytics.table import Cell
from bbnet.ledger import Ledger
from bbnet.model import Bottle, UsageRecord
from tests.analytics.conftest import Built
from tests.pgserver import PgServer

root = typer.Typer()
mount(root)
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(root, ["report", *args], prog_name="bbnet")
    return result.exit_code, result.stdout, result.stderr


def expected_cost(built: Built) -> list[dict[str, Cell]]:
    with open_ledger(built.path) as reader:
        return reports.cost(reader, ("bottle", "model", "day"), Filters()).main.records()


def same(rows: list[dict[str, object]], want: list[dict[str, Cell]]) -> None:
    assert len(rows) == len(want)
    for got, row in zip(rows, want, strict=True):
        assert got.keys() == row.keys()
        for name, value in row.items():
            assert got[name] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value)


def test_json_round_trips(built: Built) -> None:
    code, out, _ = run("cost", "--db", str(built.path), "--by", "bottle,model,day", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["report"] == "cost"
    same(document["rows"], expected_cost(built))
    assert [m["model"] for m in document["unpriced_models"]] == ["bbnet-test-unpriced"]


def test_csv_round_trips_through_python_and_duckdb(built: Built, tmp_path: Path) -> None:
    target = tmp_path / "cost.csv"
    code, _, err = run(
        "cost",
        "--db",
        str(built.path),
        "--by",
        "bottle,model,day",
        "--format",
        "csv",
        "--output",
        str(target),
    )
    assert code == 0
    assert "bbnet-test-unpriced" in err  # unpriced models are named even when the data is a bare table
    want = expected_cost(built)
    parsed = list(csv.DictReader(io.StringIO(target.read_text())))
    typed = [
        {
            **row,
            "calls": int(row["calls"]),
            "tokens": int(row["tokens"]),
            "unpriced_calls": int(row["unpriced_calls"]),
            "lost_calls": int(row["lost_calls"]),
            "cost_usd": float(row["cost_usd"]) if row["cost_usd"] else None,
        }
        for row in parsed
    ]
    same(typed, want)
    (count,) = duckdb.sql(f"SELECT count(*) FROM read_csv('{target}')").fetchone() or (0,)
    assert count == len(want)


def test_parquet_round_trips_through_duckdb_and_pyarrow(built: Built, tmp_path: Path) -> None:
    target = tmp_path / "cost.parquet"
    code, _, _ = run(
        "cost",
        "--db",
        str(built.path),
        "--by",
        "bottle,model,day",
        "--format",
        "parquet",
        "--output",
        str(target),
    )
    assert code == 0
    want = expected_cost(built)
    same(pq.read_table(target).to_pylist(), want)
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{target}')")
    same([dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()], want)


def test_empty_ledger_round_trips_every_format(empty_ledger: Path, tmp_path: Path) -> None:
    for kind in ("usage", "cost", "budgets", "actions"):
        code, out, _ = run(kind, "--db", str(empty_ledger), "--format", "json")
        assert code == 0 and json.loads(out)["rows"] == []
        code, out, _ = run(kind, "--db", str(empty_ledger), "--format", "csv")
        assert code == 0 and len(out.splitlines()) == 1  # the header only
        target = tmp_path / f"{kind}.parquet"
        code, _, _ = run(kind, "--db", str(empty_ledger), "--format", "parquet", "--output", str(target))
        assert code == 0 and pq.read_table(target).num_rows == 0 and pq.read_table(target).num_columns > 0
        code, out, _ = run(kind, "--db", str(empty_ledger))
        assert code == 0 and "no rows" in out


def test_table_and_chart(built: Built) -> None:
    code, out, _ = run("usage", "--db", str(built.path), "--by", "provider", "--chart")
    assert code == 0
    assert "anthropic" in out and "openai" in out
    assert "tokens per day (UTC)" in out and "█" in out
    code, out, _ = run("budgets", "--db", str(built.path))
    assert code == 0 and "agent:gamma/coder" in out and "exhausted" in out


def test_db_from_environment(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BBNET_DB", str(built.path))
    code, out, _ = run("actions", "--format", "json")
    assert code == 0 and len(json.loads(out)["rows"]) == len(built.actions)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cost", "--since", "yesterday"), "invalid --since 'yesterday'"),
        (("cost", "--until", "2025-13-01"), "invalid --until '2025-13-01'"),
        (("cost", "--since", "1d", "--until", "2d"), "is not before --until"),
        (("usage", "--by", "bottle,color"), "invalid --by 'bottle,color': 'color' is not one of"),
        (("usage", "--by", "model,model"), "a key is repeated"),
        (("usage", "--by", "hour,day"), "hour or day, not both"),
        (("usage", "--by", ""), "invalid --by ''"),
        (("usage", "--bottle", "Bad Name"), "invalid --bottle"),
        (("usage", "--top", "0"), "invalid --top 0"),
        (("usage", "--format", "xml"), "invalid --format 'xml'"),
        (("usage", "--format", "parquet"), "--format parquet writes a file"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(built: Built, args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args, "--db", str(built.path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err


def test_missing_ledger_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("usage", "--db", str(tmp_path / "nope.db"))
    assert (
        code == 2
        and err == f"bbnet report usage: error: no ledger at {tmp_path / 'nope.db'} (set --db or BBNET_DB)\n"
    )


def test_not_a_ledger_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    code, _, err = run("usage", "--db", str(junk))
    assert (
        code == 2
        and err.startswith(f"bbnet report usage: error: cannot read ledger {junk}:")
        and err.count("\n") == 1
    )


def test_usage_by_node_on_postgresql(pg_url: str) -> None:
    """`bbnet report usage --by node` over a PostgreSQL ledger that two hosts metered into."""
    with Ledger.open(pg_url, node="host-a") as a, Ledger.open(pg_url, node="host-b") as b:
        a.add_bottle(Bottle("web"))
        for i, (ledger, tokens) in enumerate(((a, 10), (a, 20), (b, 5))):
            ledger.commit(
                f"k{i}", UsageRecord("web", "x", "anthropic", "m", input_tokens=tokens, output_tokens=1)
            )
    code, out, err = run("usage", "--db", pg_url, "--by", "node", "--format", "json")
    assert code == 0, err
    got = {r["node"]: (r["calls"], r["tokens"]) for r in json.loads(out)["rows"]}
    assert got == {"host-a": (2, 32), "host-b": (1, 6)}


def test_unreadable_postgresql_ledger_is_one_line_without_the_password(
    pg_server: PgServer, pg_url: str
) -> None:
    secret = secrets.token_urlsafe(12)
    wrong = pg_server.url(pg_url.rsplit("/", 1)[1], password=secret)
    code, out, err = run("cost", "--db", wrong)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(
        "bbnet report cost: error: cannot read ledger postgresql://"
    )
    assert "password authentication failed" in err and secret not in err and ":***@" in err
