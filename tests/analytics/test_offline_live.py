"""Reports need no network, and read a ledger the meter is writing without blocking it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analytics import reports
from analytics.duck import OFFLINE_CONFIG
from analytics.queries import Filters
from analytics.reader import open_ledger
from bbnet.ledger import Ledger
from bbnet.model import Bottle
from tests.analytics.conftest import Built

REPORT = "import typer, sys; from analytics.cli import mount; r = typer.Typer(); mount(r); r(sys.argv[1:])"


def test_extension_comes_from_the_wheel_with_downloads_off(built: Built) -> None:
    assert OFFLINE_CONFIG["autoinstall_known_extensions"] is False
    assert OFFLINE_CONFIG["autoload_known_extensions"] is False
    with open_ledger(built.path) as reader:
        (loaded,) = reader.con.execute(
            "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'sqlite_scanner'"
        ).fetchone() or (False,)
    assert loaded


@pytest.mark.root
def test_reports_run_with_no_network(built: Built, tmp_path: Path) -> None:
    """In a fresh network namespace (loopback down, no routes) with an empty HOME: no cached extension."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    for kind in ("usage", "cost", "budgets", "actions"):
        done = subprocess.run(
            [
                "unshare",
                "-n",
                sys.executable,
                "-c",
                REPORT,
                "report",
                kind,
                "--db",
                str(built.path),
                "--format",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["report"] == kind
    assert not (home / ".duckdb").exists()  # nothing was installed or downloaded


WRITER = textwrap.dedent(
    """
    import sys
    from bbnet.ledger import Ledger
    from bbnet.model import UsageRecord
    path, count = sys.argv[1], int(sys.argv[2])
    with Ledger.open(path) as ledger:
        for i in range(count):
            ledger.commit(f"live-{i}", UsageRecord("alpha", "coder", "openai", "gpt-4o", 100, 10))
    print("committed", count)
    """
)


def test_reports_read_a_ledger_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    with Ledger.open(path) as ledger:
        ledger.add_bottle(Bottle("alpha"))
    total = 1500
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(total)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[int] = []
    try:
        while writer.poll() is None:
            with open_ledger(path) as reader:
                rows = reports.usage(reader, (), Filters()).main.rows
            calls = rows[0][0] if rows else 0
            assert isinstance(calls, int)
            seen.append(calls)
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err
    assert out.strip() == f"committed {total}"
    assert seen == sorted(seen)  # each report a consistent, newer snapshot
    assert any(0 < n < total for n in seen), seen  # reports ran while commits were landing
    with open_ledger(path) as reader:
        assert reports.usage(reader, (), Filters()).main.rows[0][0] == total
