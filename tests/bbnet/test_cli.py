"""The `bbnet` CLI of the foundation: budgets, bottles, ledger info, settings; bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bbnet.ledger import Ledger
from bbnet.model import Bottle
from tests.conftest import run_bbnet


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def ledger_db(db: Path) -> Path:
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("web", veth="bb-web", addresses=("10.243.0.2/30",)))
        ledger.add_bottle(Bottle("web-child", parent="web"))
    return db


def test_budget_set_and_list(ledger_db: Path) -> None:
    db = str(ledger_db)
    assert run_bbnet("budget", "set", "global", "anthropic", "5M", "--db", db).returncode == 0
    assert (
        run_bbnet(
            "budget", "set", "bottle:web", "*", "12.50", "--unit", "usd", "--period", "day", "--db", db
        ).returncode
        == 0
    )
    assert run_bbnet("budget", "set", "agent:web-child/coder", "openai", "500k", "--db", db).returncode == 0
    out = run_bbnet("budget", "list", "--json", "--db", db)
    assert out.returncode == 0, out.stderr
    pools = {(p["scope"], p["provider"], p["unit"]): p for p in json.loads(out.stdout)}
    assert pools[("global", "anthropic", "tokens")]["limit"] == 5_000_000
    assert pools[("bottle:web", "*", "usd")]["limit"] == 12.5
    assert pools[("bottle:web", "*", "usd")]["period"] == "day"
    assert pools[("agent:web-child/coder", "openai", "tokens")]["remaining"] == 500_000
    table = run_bbnet("budget", "list", "--db", db)
    assert "bottle:web" in table.stdout


def test_bottle_list_and_ledger_info(ledger_db: Path) -> None:
    out = run_bbnet("bottle", "list", "--json", "--db", str(ledger_db))
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["web", "web-child"]
    assert rows[0]["state"] == "open" and rows[0]["addresses"] == ["10.243.0.2/30"]
    info = json.loads(run_bbnet("ledger", "info", "--json", "--db", str(ledger_db)).stdout)
    assert info["schema_version"] >= 2 and info["mode"] == "0o600" and info["rows"]["bottles"] == 2


def test_db_from_environment(ledger_db: Path) -> None:
    out = run_bbnet("bottle", "list", "--json", env={"BBNET_DB": str(ledger_db)})
    assert [r["name"] for r in json.loads(out.stdout)] == ["web", "web-child"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("budget", "set", "bottle:Bad_Name", "anthropic", "5"), "invalid bottle name"),
        (("budget", "set", "agent:web", "anthropic", "5"), "expected agent:BOTTLE/AGENT"),
        (("budget", "set", "bottle:ghost", "anthropic", "5"), "unknown bottle 'ghost'"),
        (("budget", "set", "global", "anthropic", "-5"), "invalid token limit '-5'"),
        (("budget", "set", "global", "anthropic", "lots"), "invalid token limit 'lots'"),
        (("budget", "set", "global", "anthropic", "1.5"), "whole number"),
        (("budget", "set", "global", "anthropic", "-1", "--unit", "usd"), "invalid USD limit"),
        (("budget", "set", "global", "anthropic", "NaN", "--unit", "usd"), "invalid USD limit"),
        (("budget", "set", "global", "antropic", "5"), "unknown provider 'antropic'"),
        (("budget", "set", "global", "openai", "5", "--unit", "euros"), "invalid unit"),
        (("budget", "set", "global", "openai", "5", "--period", "year"), "invalid period"),
    ],
)
def test_bad_input_is_one_clear_line_and_changes_nothing(
    ledger_db: Path, args: tuple[str, ...], message: str
) -> None:
    before = _dump(ledger_db)
    out = run_bbnet(*args, "--db", str(ledger_db))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith(f"bbnet {args[0]} {args[1]}: error: ") and message in lines[0]
    ), out.stderr
    assert _dump(ledger_db) == before


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("budget", "set"),
            "bbnet budget set: error: Missing argument 'scope'. (see bbnet budget set --help)",
        ),
        (("nosuch",), "bbnet: error: No such command 'nosuch'. (see bbnet --help)"),
        (("bottle", "list", "--colour"), "bbnet bottle list: error: No such option: --colour"),
        (("report", "usage", "--top", "x"), "bbnet report usage: error: Invalid value for '--top'"),
    ],
)
@pytest.mark.parametrize("columns", ["20", "300"])
def test_usage_errors_are_one_plain_line_at_any_width(
    tmp_path: Path, args: tuple[str, ...], line: str, columns: str
) -> None:
    out = run_bbnet(*args, env={"COLUMNS": columns, "BBNET_DB": str(tmp_path / "ledger.db")})
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(line), out.stderr
    assert not any(box in out.stderr for box in "╭│╰─")
    assert not (tmp_path / "ledger.db").exists()


def test_unwritable_db_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    out = run_bbnet("budget", "set", "global", "openai", "5", "--db", str(blocker / "ledger.db"))
    assert out.returncode == 2
    assert "cannot create ledger" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_missing_ledger_for_info(tmp_path: Path) -> None:
    out = run_bbnet("ledger", "info", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 2 and "no ledger" in out.stderr
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cutoff", "Bad;Name", "--db", "DB"), "invalid bottle name 'Bad;Name'"),
        (("kill", "web", "--db", "DB"), "no ledger at"),
        (("bottle", "rm", "web", "--db", "DB"), "no ledger at"),
        (("bottle", "exec", "Web", "--db", "DB", "--", "true"), "invalid bottle name 'Web'"),
        (("budget", "set", "bottle:web", "anthropic", "5k", "--db", "DB"), "no ledger at"),
    ],
)
def test_commands_that_need_a_bottle_never_create_a_ledger(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    out = run_bbnet(*(str(tmp_path / "none.db") if a == "DB" else a for a in args))
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_settings_check_and_apply(tmp_path: Path, db: Path) -> None:
    good = tmp_path / "settings.yml"
    good.write_text(
        "budget:\n  anthropic: 5000000\n  openai: {limit: 2000000, period: month}\n"
        "usd: {global: 200, period: month}\n"
    )
    assert run_bbnet("settings", "check", "--settings", str(good)).returncode == 0
    assert run_bbnet("budget", "set", "global", "anthropic", "7M", "--db", str(db)).returncode == 0
    out = run_bbnet("settings", "apply", "--settings", str(good), "--db", str(db))
    assert out.returncode == 0, out.stderr
    with Ledger.open(db) as ledger:
        budgets = {(str(b.scope), b.provider, b.unit): b for b in ledger.budgets()}
    assert budgets[("global", "anthropic", "tokens")].limit == 7_000_000  # the CLI's budget wins
    assert budgets[("global", "openai", "tokens")].period == "month"
    assert budgets[("global", "*", "usd")].limit == 200_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budget:\n  antropic: 5\n", "budget.antropic: unknown provider"),
        ("budget:\n  openai: -1\n", "budget.openai: Input should be greater than or equal to 0"),
        ("shutdown: explode\n", "shutdown: Input should be 'cutoff', 'freeze' or 'kill'"),
        ("budgets: {}\n", "budgets: unknown key"),
        ("budget: [1, 2\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("usd: {global: lots}\n", "usd.global"),
        ("fleet: {slice_tokens: 5}\n", "fleet.url: Field required"),
        ("fleet: {url: 'db.example/fleet'}\n", "fleet.url: expected a postgresql:// URL"),
        (
            "fleet: {url: /x.db, slice_fraction: 2}\n",
            "fleet.slice_fraction: Input should be less than or equal to 1",
        ),
    ],
)
def test_bad_settings_file(tmp_path: Path, db: Path, text: str, message: str) -> None:
    bad = tmp_path / "settings.yml"
    bad.write_text(text)
    out = run_bbnet("settings", "apply", "--settings", str(bad), "--db", str(db))
    assert out.returncode == 2
    assert str(bad) in out.stderr and message in out.stderr, out.stderr
    assert not db.exists()  # nothing written


def test_bottle_egress_set_show_default(ledger_db: Path, tmp_path: Path) -> None:
    db, policy = str(ledger_db), tmp_path / "web.yml"
    policy.write_text("presets: [pypi, github]\nallow:\n  - hosts: [docs.example]\n")
    shown = run_bbnet("bottle", "egress", "web", "--db", db, "--settings", str(tmp_path / "none.yml"))
    assert shown.stdout.strip() == "bottle web: egress LLM providers only (host default)"
    done = run_bbnet("bottle", "egress", "web", str(policy), "--db", db, "--reason", "needs docs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "bottle web: egress LLM providers + presets pypi, github; 1 rule (bottle)"
    with Ledger.open(ledger_db) as ledger:
        [row] = [a for a in ledger.actions() if a.action == "egress"]
        assert (row.bottle, row.reason, json.loads(row.detail or "")["presets"]) == (
            "web",
            "needs docs",
            ["pypi", "github"],
        )
        assert set(ledger.egress_policies()) == {"web"}
    assert run_bbnet("bottle", "egress", "web", "--default", "--db", db).returncode == 0
    with Ledger.open(ledger_db) as ledger:
        assert ledger.egress_policies() == {}
        assert [a.detail for a in ledger.actions() if a.action == "egress"][-1] == '"default"'


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("bottle", "egress", "web", "{policy}", "--db", "{db}"), "bbnet bottle egress: error: {policy}: allow.0.host: unknown key"),
        (("bottle", "egress", "nobody", "--default", "--db", "{db}"), "bbnet bottle egress: error: no bottle named 'nobody'"),
        (("bottle", "egress", "web", "{policy}", "--default", "--db", "{db}"), "bbnet bottle egress: error: give a policy FILE or --default, not both"),
        (("bottle", "create", "new", "--egress", "{policy}", "--db", "{db}"), "bbnet bottle create: error: {policy}: allow.0.host: unknown key"),
        (("settings", "check", "--settings", "{settings}"), "bbnet settings check: error: {settings}: egress.presets.0: Input should be"),
    ],
)  # fmt: skip
def test_bad_egress_input_is_one_line_and_changes_nothing(
    ledger_db: Path, tmp_path: Path, args: tuple[str, ...], error: str
) -> None:
    policy, settings = tmp_path / "bad.yml", tmp_path / "settings.yml"
    policy.write_text("allow:\n  - host: [docs.example]\n")
    settings.write_text("egress:\n  presets: [pypy]\n")
    before = _dump(ledger_db)
    done = run_bbnet(*(a.format(policy=policy, settings=settings, db=ledger_db) for a in args))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(error.format(policy=policy, settings=settings))
    assert _dump(ledger_db) == before
