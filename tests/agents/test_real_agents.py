"""The real agent CLIs (Claude Code, Codex, Gemini CLI) in a bottle, through `bbnet serve`, with the
provider simulator upstream: each call they make is one usage row equal to what the agent itself
reports, nothing reaches a provider path unmetered, and a budget with no room left cuts the agent
off in the kernel.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from enforcer.nft import Nft
from meter.sim import SimHandle
from meter.sim_route import route
from tests.agents.clis import ALL, Cli
from tests.agents.runner import RUN_SECONDS, no_reservations, run_ok, sim_requests, start, usage
from tests.service.harness import Service, create_bottle, cut_in_kernel, eventually

pytestmark = [pytest.mark.root, pytest.mark.slow]

CLIS = pytest.mark.parametrize("cli", ALL, ids=[c.name for c in ALL])


def llm_paths(requests: Counter[str]) -> list[str]:
    """The requests on a provider API path (what the meter meters), one entry per request."""
    paths = []
    for line, count in requests.items():
        method, path, status = line.split(" ")
        if route(path) is not None:
            # WS: one response.create on a WebSocket (Codex's transport), as the simulator counts it
            assert method in ("POST", "WS") and status == "200", (
                f"the simulator refused a provider call: {line}"
            )
            paths += [path] * count
    return sorted(paths)


def dropped(veth: str) -> int:
    """Packets the kernel dropped from ``veth`` since it was cut (0 when it is not cut)."""
    return Nft().cutoff_counters().get(veth, (0, 0))[0]


@CLIS
def test_each_call_is_one_usage_row_equal_to_what_the_agent_reports(
    cli: Cli, service: Service, sim: SimHandle, tmp_path: Path
) -> None:
    sim.reset()
    bottle = create_bottle(service, f"ag-{cli.name}")
    run = run_ok(service, bottle, cli, tmp_path, "run")
    reported = cli.report(run.stdout())
    eventually(lambda: no_reservations(service), 60, "every call committed")
    rows = usage(service, bottle)
    requests = sim_requests(sim)

    # nothing unmetered: every provider call the simulator answered is one usage row, and back
    assert rows and sorted(r["path"] for r in rows) == llm_paths(requests)
    assert len({r["key"] for r in rows}) == len(rows)
    assert all(
        (r["provider"], r["estimated"], r["lost"], r["status"]) == (cli.provider, 0, 0, 200) for r in rows
    )
    # the rows hold what the simulator counted it generated, and what the agent says it spent, in
    # total and per model where it tells
    spent = (sum(r["input_tokens"] for r in rows), sum(r["output_tokens"] for r in rows))
    assert spent == (sim.stats()["input_tokens"], sim.stats()["output_tokens"])
    assert spent == (reported.input_tokens, reported.output_tokens)
    if reported.models:
        assert {r["model"] for r in rows} == set(reported.models)
    for model, spend in reported.models.items():
        mine = [r for r in rows if r["model"] == model]
        assert (sum(r["input_tokens"] for r in mine), sum(r["output_tokens"] for r in mine)) == (
            spend.input_tokens,
            spend.output_tokens,
        )
        assert spend.calls is None or spend.calls == len(mine)

    ledger_cost = [r["cost_usd"] for r in rows]
    figures = {
        "agent": cli.name,
        "calls": len(rows),
        "models": sorted({r["model"] for r in rows}),
        "input_tokens": spent[0],
        "output_tokens": spent[1],
        "ledger_cost_usd": None if None in ledger_cost else round(sum(ledger_cost), 6),
        "agent_cost_usd": reported.cost_usd,
        "other_requests": {k: v for k, v in requests.items() if route(k.split(" ")[1]) is None},
    }
    print(json.dumps(figures))
    if reported.cost_usd is not None and figures["ledger_cost_usd"] is not None:
        assert figures["ledger_cost_usd"] == pytest.approx(reported.cost_usd, rel=0.01)


@CLIS
def test_a_spent_budget_cuts_the_agent_off_in_the_kernel(
    cli: Cli, service: Service, sim: SimHandle, tmp_path: Path
) -> None:
    sim.reset()
    bottle = create_bottle(service, f"cut-{cli.name}")
    run_ok(service, bottle, cli, tmp_path, "first")
    eventually(lambda: no_reservations(service), 60, "the first run committed")
    billed = usage(service, bottle)
    spent = sum(r["input_tokens"] + r["output_tokens"] for r in billed)
    # what the first run spent, plus one token: no room for another call
    service.ok("budget", "set", f"bottle:{bottle.name}", cli.provider, str(spent + 1))

    second = start(service, bottle, cli, tmp_path, "second")
    try:
        eventually(lambda: bottle.veth in cut_in_kernel(), RUN_SECONDS, "the controller cuts the bottle")
    finally:
        second.kill()
    assert f"deny bottle={bottle.name} " in service.stderr()  # the meter refused the call (429) first
    with service.ledger() as ledger:
        state = ledger.desired_state(bottle.name)
    assert (state.state, state.actor) == ("cutoff", "controller") and state.reason.startswith(
        "budget exhausted"
    )

    before = dropped(bottle.veth)
    third = start(service, bottle, cli, tmp_path, "third")
    try:
        eventually(lambda: dropped(bottle.veth) > before, RUN_SECONDS, "the next call dies in the kernel")
    finally:
        third.kill()
    # the refused call never left: no row, no hold, and the simulator saw only the first run
    eventually(lambda: no_reservations(service), 60, "no call holds budget")
    assert usage(service, bottle) == billed
    assert llm_paths(sim_requests(sim)) == sorted(r["path"] for r in billed)
