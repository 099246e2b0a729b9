"""`bbnet serve` with a fleet: real SDK calls out of a bottle are held to a global budget kept in a
real PostgreSQL; a host that starts while the fleet database is down fails closed (503
BUDGET_CONFIG), then serves once it is back, and the fleet's totals equal the host's usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import pgserver
from tests.service.harness import Service, cleanup, create_bottle, eventually, remove_table, run_agent

pytestmark = pytest.mark.root


def fleet_totals(svc: Service) -> dict[str, Any]:
    out = json.loads(svc.ok("budget", "list", "--db", str(svc.db), "--settings", str(svc.settings), "--json"))
    (pool,) = out["fleet"]
    return dict(pool)


def test_serve_leases_a_global_budget_and_fails_closed_without_the_fleet(
    tmp_path: Path, sim_url: str, root_lock: None
) -> None:
    remove_table()
    with pgserver.running() as server:
        url = server.new_database()
        text = (
            f"budget: {{anthropic: 1000000}}\nnode: host-one\nfleet: {{url: '{url}', slice_tokens: 20000}}\n"
        )
        svc = Service(tmp_path / "serve", sim_url, settings_text=text)
        with cleanup(svc):
            svc.start()
            bottle = create_bottle(svc, "fleetcall")
            lines = run_agent(svc, bottle, "anthropic", "--calls", "3", "--stream-every", "2")
            assert [line["outcome"] for line in lines] == ["ok"] * 3
            with svc.ledger() as ledger:
                spent = sum(r["input_tokens"] + r["output_tokens"] for r in ledger.usage(bottle=bottle.name))
            settled = eventually(lambda: (p := fleet_totals(svc))["used"] == spent and p, 30, "settled")
            assert settled["limit"] == 1_000_000 and [n["node"] for n in settled["nodes"]] == ["host-one"]

            svc.stop()
            server.stop()
            svc.start()  # no fleet database: the host holds no slice, a global-budget call fails closed
            [refused] = run_agent(svc, bottle, "anthropic", "--calls", "1", "--stream-every", "0")
            assert refused["outcome"] == "error" and "503" in refused["error"]  # BUDGET_CONFIG
            assert "ledger unavailable: fleet database" in refused["error"]
            assert server.password not in svc.stderr() + refused["error"]
            server.start()
            back = eventually(
                lambda: (
                    run_agent(svc, bottle, "anthropic", "--calls", "1", "--stream-every", "0")[0]["outcome"]
                    == "ok"
                ),
                60,
                "a call once the fleet is back",
                every=0.5,
            )
            assert back
            with svc.ledger() as ledger:
                spent = sum(r["input_tokens"] + r["output_tokens"] for r in ledger.usage(bottle=bottle.name))
            eventually(lambda: fleet_totals(svc)["used"] == spent, 30, "settlement caught up")
