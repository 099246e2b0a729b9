"""The `dashboard` command as mounted on a Typer app (the lead mounts it on `bbnet`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bbnet.clikit import CliError
from bbnet.ledger import LedgerError
from dashboard.cli import mount


@pytest.fixture
def root() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # a second command, so `dashboard` is a subcommand
    mount(app)
    return app


def test_help_lists_the_options(root: typer.Typer) -> None:
    result = CliRunner().invoke(root, ["dashboard", "--help"])
    assert result.exit_code == 0
    assert "--db" in result.output and "--refresh" in result.output


def test_bad_refresh_is_one_clear_error(root: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(root, ["dashboard", "--db", str(tmp_path / "l.db"), "--refresh", "0"])
    assert isinstance(result.exception, CliError)
    assert str(result.exception) == "invalid --refresh 0.0: expected seconds between 0.05 and 60"


def test_a_missing_ledger_is_not_created(root: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(root, ["dashboard", "--db", str(tmp_path / "none.db")])
    assert isinstance(result.exception, LedgerError)
    assert "no ledger at" in str(result.exception)
    assert not (tmp_path / "none.db").exists()


def test_importing_the_cli_does_not_import_textual() -> None:
    import subprocess
    import sys

    code = "import sys, dashboard.cli; print('textual' in sys.modules, 'enforcer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
