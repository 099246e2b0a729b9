"""Settings' ``ledger.url`` and ``node``: validated, and where a command's ledger comes from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbnet.defaults import DEFAULT_DB
from bbnet.ledger import Ledger, LedgerError
from bbnet.limits import SettingsError
from bbnet.model import Bottle, UsageRecord
from bbnet.settings import parse
from tests.conftest import run_bbnet


def test_ledger_url_and_node_are_validated() -> None:
    s = parse("ledger: {url: 'postgresql://bbnet@db.example/ledger'}\nnode: web-01\n")
    assert s.ledger_target(None) == "postgresql://bbnet@db.example/ledger"
    assert s.ledger_target("/tmp/x.db") == "/tmp/x.db"  # --db and BBNET_DB win
    assert s.node == "web-01"
    assert parse("").ledger_target(None) == DEFAULT_DB and parse("").node is None
    with pytest.raises(SettingsError, match=r"ledger\.url: expected a postgresql:// URL"):
        parse("ledger: {url: 'mysql://x'}")
    with pytest.raises(SettingsError, match=r"node: invalid node name 'Web_01'"):
        parse("node: Web_01")


def test_usage_rows_carry_the_node(ledger_db: str) -> None:
    with Ledger.open(ledger_db, node="edge-7") as ledger:
        ledger.add_bottle(Bottle("a"))
        ledger.commit("k", UsageRecord("a", "x", "anthropic", "m", input_tokens=1))
        assert [r["node"] for r in ledger.usage()] == ["edge-7"]
    with pytest.raises(LedgerError, match="invalid node name"):
        Ledger.open(ledger_db, node="-bad")


def test_commands_open_the_settings_ledger_url(tmp_path: Path, pg_url: str) -> None:
    settings = tmp_path / "settings.yml"
    settings.write_text(f"ledger: {{url: '{pg_url}'}}\n")
    env = {"BBNET_SETTINGS": str(settings), "BBNET_DB": ""}
    r = run_bbnet("bottle", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    with Ledger.open(pg_url, create=False) as ledger:  # the command created the schema there
        assert ledger.bottles() == []


def test_a_command_given_settings_opens_their_ledger(tmp_path: Path, pg_url: str) -> None:
    """`budget set/list --settings FILE` open FILE's ledger.url, not the default settings' ledger."""
    settings = tmp_path / "settings.yml"
    settings.write_text(f"ledger: {{url: '{pg_url}'}}\n")
    env = {"BBNET_SETTINGS": str(tmp_path / "absent.yml"), "BBNET_DB": ""}
    r = run_bbnet("budget", "set", "global", "anthropic", "5000", "--settings", str(settings), env=env)
    assert r.returncode == 0, r.stderr
    r = run_bbnet("budget", "list", "--json", "--settings", str(settings), env=env)
    assert r.returncode == 0, r.stderr
    assert [(p["scope"], p["limit"]) for p in json.loads(r.stdout)] == [("global", 5000)]
    with Ledger.open(pg_url, create=False) as ledger:
        assert [b.limit for b in ledger.budgets()] == [5000]


def test_an_unparseable_ledger_url_is_one_line_without_its_password(tmp_path: Path) -> None:
    bad = "postgresql://bbnet:s3cret-pw@[db/x"
    with pytest.raises(SettingsError, match=r"ledger\.url: invalid PostgreSQL URL") as e:
        parse(f"ledger: {{url: '{bad}'}}")
    assert "s3cret-pw" not in str(e.value)
    for args in (("budget", "list"), ("report", "usage")):
        r = run_bbnet(*args, "--db", bad, env={"BBNET_SETTINGS": str(tmp_path / "absent.yml")})
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and "invalid PostgreSQL URL" in r.stderr, r.stderr
        assert "s3cret-pw" not in r.stderr + r.stdout
