"""`bbnet budget list` with a fleet: the fleet's totals and each host's slice; a bad URL is one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bbnet import fleet
from bbnet.fleet_lease import FleetLedger, LeaseManager
from bbnet.model import Bottle, Budget, ReserveRequest, UsageRecord
from bbnet.names import Scope
from tests import pgserver
from tests.conftest import run_bbnet


def settings_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "settings.yml"
    path.write_text(f"budget: {{anthropic: 10000}}\nfleet: {{url: '{url}', slice_tokens: 1000}}\n")
    return path


def test_budget_list_shows_fleet_totals_per_host(tmp_path: Path, pg_url: str) -> None:
    budgets = [Budget(Scope.global_(), "anthropic", "tokens", 10_000, "total", "settings")]
    with FleetLedger.open(tmp_path / "a.db") as ledger:
        ledger.add_bottle(Bottle("b1"))
        manager = LeaseManager(ledger, pg_url, "host-a", fleet.SliceConfig(slice_tokens=1000), budgets)
        manager.begin(time.time())
        ledger.reserve(ReserveRequest("k1", "b1", "a", "anthropic", "claude-sonnet-4", 100, 200))
        ledger.commit("k1", UsageRecord("b1", "a", "anthropic", "claude-sonnet-4", 100, 200))
        manager.step(time.time() + 2)  # settled
    s = settings_file(tmp_path, pg_url)
    out = run_bbnet("budget", "list", "--db", str(tmp_path / "a.db"), "--settings", str(s), "--json")
    assert out.returncode == 0, out.stderr
    (pool,) = json.loads(out.stdout)["fleet"]
    assert (pool["limit"], pool["used"], pool["reserved"]) == (10_000, 300, 700)
    assert [(n["node"], n["consumed"], n["held"]) for n in pool["nodes"]] == [("host-a", 300, 700)]
    table = run_bbnet("budget", "list", "--db", str(tmp_path / "a.db"), "--settings", str(s))
    assert table.returncode == 0 and "host-a" in table.stdout and "10,000" in table.stdout


def test_budget_list_with_a_wrong_fleet_password_is_one_line(
    tmp_path: Path, pg_server: pgserver.PgServer
) -> None:
    wrong = "definitely-wrong-pw"
    s = settings_file(tmp_path, pg_server.url(password=wrong))
    out = run_bbnet("budget", "list", "--db", str(tmp_path / "a.db"), "--settings", str(s))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0]
    assert wrong not in out.stderr + out.stdout
