"""The demo's pure parts: agent output, totals, the verdict, rendering, the probe (no root)."""

from __future__ import annotations

import copy
import io
import json
import socket
import subprocess
import sys
from typing import Any

import pytest
from rich.console import Console

from bbnet.model import PoolView
from demo import probe, scenario, stack, view
from demo.scenario import CLAUDE, GPT, PLANS, Tally


def _ok(i: int, stream: bool = False) -> dict[str, Any]:
    return {
        "i": i,
        "sdk": "anthropic",
        "stream": stream,
        "outcome": "ok",
        "input_tokens": 112,
        "output_tokens": 16,
    }


def test_parse_agent_line_keeps_only_agent_events() -> None:
    line = json.dumps(_ok(3, stream=True))
    assert scenario.parse_agent_line(line) == _ok(3, stream=True)
    assert scenario.parse_agent_line("Traceback (most recent call last):") is None
    assert scenario.parse_agent_line('{"outcome": "maybe"}') is None
    assert scenario.parse_agent_line("[1, 2]") is None


def test_tally_counts_outcomes_streams_tokens_and_the_last_error() -> None:
    events = [
        _ok(0),
        _ok(1, stream=True),
        {"i": 2, "stream": False, "outcome": "denied", "error": "RateLimitError: 429"},
        {"i": 3, "stream": True, "outcome": "error", "error": "APITimeoutError: timed out"},
    ]
    t = scenario.tally(events)
    assert (t.ok, t.denied, t.error, t.streamed, t.tokens, t.calls) == (2, 1, 1, 1, 256, 4)
    assert t.last_error == "APITimeoutError: timed out"
    assert scenario.tally([]) == Tally()


def test_agent_args_carry_the_plan() -> None:
    args = scenario.agent_args(CLAUDE, "http://10.243.250.1:8080", "/w/ca.pem", calls=1)
    assert args[:2] == ["-m", "demo.agent"]
    pairs = dict(zip(args[2::2], args[3::2], strict=True))
    assert pairs["--sdk"] == "anthropic" and pairs["--calls"] == "1"
    assert pairs["--proxy"] == "http://10.243.250.1:8080" and pairs["--ca"] == "/w/ca.pem"
    assert pairs["--stream-every"] == str(CLAUDE.stream_every)
    assert dict(zip(*[iter(scenario.agent_args(GPT, "p", "c")[2:])] * 2, strict=True))["--calls"] == str(
        GPT.calls
    )


def test_agent_args_are_what_demo_agent_accepts() -> None:
    from demo import agent

    with pytest.raises(SystemExit) as exit_info:  # --help: parsed, then exits 0 without calling
        agent.main([*scenario.agent_args(CLAUDE, "http://h:1", "ca.pem")[2:], "--help"])
    assert exit_info.value.code == 0


def test_claude_runs_out_and_gpt_does_not() -> None:
    per_call = 112 + 16  # the simulator's usage for the agent's prompt at max-tokens ≥ 16
    assert CLAUDE.calls * per_call > CLAUDE.budget
    assert GPT.calls * per_call < GPT.budget
    # after the raise, room for every call's reservation (input + max-tokens), whatever was used
    assert scenario.RAISED_BUDGET - CLAUDE.budget > scenario.CALLS_AFTER_RESTORE * (112 + scenario.MAX_TOKENS)


def test_proxy_endpoint() -> None:
    assert scenario.proxy_endpoint("tcp:10.243.250.1:8080") == ("10.243.250.1", 8080)
    for bad in ("udp:1.2.3.4:80", "tcp:1.2.3.4", "tcp::80", "tcp:1.2.3.4:http"):
        with pytest.raises(ValueError, match="invalid proxy label"):
            scenario.proxy_endpoint(bad)


def test_report_and_ledger_totals() -> None:
    report = {"rows": [{"bottle": "a", "calls": 2, "tokens": 256, "cost_usd": 0.5},
                       {"bottle": "b", "calls": 1, "tokens": 100, "cost_usd": None}]}  # fmt: skip
    usage: list[dict[str, Any]] = [
        {"input_tokens": 100, "output_tokens": 28, "cost_usd": 0.25},
        {"input_tokens": 100, "output_tokens": 28, "cost_usd": 0.25},
        {"input_tokens": 90, "output_tokens": 10, "cost_usd": None},
    ]
    assert scenario.report_totals(report) == {"calls": 3, "tokens": 356, "cost_usd": 0.5}
    assert scenario.ledger_totals(usage) == scenario.report_totals(report)


def _good_summary() -> dict[str, Any]:
    agent = {"calls": 20, "ok": 18, "denied": 0, "error": 2, "streamed": 9, "tokens": 2304, "last_error": ""}
    totals = {"calls": 52, "tokens": 6656, "cost_usd": 0.02}
    return {
        "agents": {CLAUDE.bottle: agent, GPT.bottle: {**agent, "error": 0, "ok": 20, "streamed": 6}},
        "probes": {
            "before": {b: {"proxy": True, "bypass": False} for b in (CLAUDE.bottle, GPT.bottle)},
            "after_cutoff": {"proxy": False, "bypass": False, "api_call": "error", "neighbour_proxy": True},
        },
        "cutoff": {
            "actor": "controller",
            "reason": "budget exhausted: bottle:demo-claude …",
            "in_kernel": True,
            "dropped_packets": 12,
        },
        "states": {"during_cutoff": {CLAUDE.bottle: "cutoff", GPT.bottle: "open"}},
        "restored": {"state": "open", "calls": 4, "ok": 4},
        "report_totals": totals,
        "ledger_totals": dict(totals),
    }


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("agents", GPT.bottle, "ok"), 0, "never got an answer"),
        (("agents", CLAUDE.bottle, "streamed"), 0, "streaming and non-streaming"),
        (("cutoff", "actor"), "operator:root", "not cut off by the controller"),
        (("cutoff", "in_kernel"), False, "the kernel did not hold"),
        (("cutoff", "dropped_packets"), 0, "the kernel did not hold"),
        (("probes", "before", GPT.bottle, "bypass"), True, "go around it"),
        (("probes", "after_cutoff", "proxy"), True, "still reached something"),
        (("probes", "after_cutoff", "api_call"), "ok", "still reached something"),
        (("agents", GPT.bottle, "denied"), 1, "affected by its neighbour"),
        (("states", "during_cutoff", GPT.bottle), "cutoff", "affected by its neighbour"),
        (("probes", "after_cutoff", "neighbour_proxy"), False, "affected by its neighbour"),
        (("restored", "ok"), 3, "did not work again"),
        (("ledger_totals", "calls"), 51, "does not add up"),
    ],
)
def test_problems_name_what_was_not_shown(path: tuple[str, ...], value: object, problem: str) -> None:
    assert scenario.problems(_good_summary()) == []
    summary = copy.deepcopy(_good_summary())
    target = summary
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    found = scenario.problems(summary)
    assert len(found) == 1 and problem in found[0]


def test_clashing_addresses() -> None:
    host = ["127.0.0.1/8", "10.243.250.5/30", "10.243.0.1/30", "10.0.0.0/8"]
    assert stack.clashing_addresses("10.243.250.0/24", host) == ["10.0.0.0/8", "10.243.250.5/30"]
    assert stack.clashing_addresses("10.243.250.0/24", ["192.168.1.4/24"]) == []


def _render(renderable: object) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_spend_table_shows_pool_use_state_and_cost() -> None:
    pools = [PoolView("bottle:demo-claude", "anthropic", "tokens", "total", 0.0, 2500, 2432, 0),
             PoolView("bottle:demo-gpt", "openai", "tokens", "total", 0.0, 50000, 3000, 128)]  # fmt: skip
    text = _render(view.spend_table(PLANS, pools, {CLAUDE.bottle: Tally(ok=19, error=2)},
                                    {CLAUDE.bottle: "cutoff"}, {GPT.bottle: 0.0132}))  # fmt: skip
    claude = next(line for line in text.splitlines() if CLAUDE.bottle in line)
    gpt = next(line for line in text.splitlines() if GPT.bottle in line)
    assert "cutoff" in claude and "19" in claude and "2,432 / 2,500 tokens" in claude and "$0.0000" in claude
    assert "open" in gpt and "3,128 / 50,000 tokens" in gpt and "$0.0132" in gpt


def test_bar_fills_in_proportion() -> None:
    assert view.bar(0, 100, 10).plain == "░" * 10
    assert view.bar(50, 100, 10).plain == "█" * 5 + "░" * 5
    assert view.bar(500, 100, 10).plain == "█" * 10
    assert view.bar(1, 0, 10).plain == "█" * 10


def test_probe_table_and_agent_lines() -> None:
    text = _render(view.probe_table("t", [("b1", "the meter", {"target": "h:1", "connected": True, "error": None}),
                                          ("b1", "direct", {"target": "h:2", "connected": False,
                                                            "error": "timed out"})]))  # fmt: skip
    assert "connected" in text and "blocked (timed out)" in text
    lines = [t.plain for t in view.agent_lines([_ok(0), _ok(1, True), {"i": 2, "outcome": "error", "error": "boom"}],
                                               last=2)]  # fmt: skip
    assert (
        len(lines) == 2
        and "stream" in lines[0]
        and "ok" in lines[0]
        and "error" in lines[1]
        and "boom" in lines[1]
    )


def test_probe_parse_target() -> None:
    assert probe.parse_target("proxy=10.0.0.1:8080") == ("proxy", "10.0.0.1", 8080)
    for bad in ("10.0.0.1:8080", "p=10.0.0.1", "p=:80", "p=h:0", "p=h:70000"):
        with pytest.raises(ValueError, match="NAME=HOST:PORT"):
            probe.parse_target(bad)


def test_probe_tells_connected_from_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            closed_port = spare.getsockname()[1]  # bound, never listening: refused
            done = subprocess.run(
                [sys.executable, "-m", "demo.probe", f"up=127.0.0.1:{open_port}", f"down=127.0.0.1:{closed_port}"],
                capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["up"] == {"target": f"127.0.0.1:{open_port}", "connected": True, "error": None}
    assert result["down"] == {"target": f"127.0.0.1:{closed_port}", "connected": False, "error": "refused"}


def test_probe_rejects_a_bad_target() -> None:
    done = subprocess.run([sys.executable, "-m", "demo.probe", "nonsense"], capture_output=True, text=True,
                          check=False, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "invalid target 'nonsense'" in done.stderr


def test_live_frame_and_explore_panel() -> None:
    events = {CLAUDE.bottle: [_ok(0), _ok(1, stream=True)]}
    text = _render(view.live_frame(PLANS, [], events, {}, {}))
    assert (
        "live spend" in text
        and f"{CLAUDE.bottle} (anthropic SDK):" in text
        and f"{GPT.bottle} (openai SDK):" in text
    )
    assert f"0 / {CLAUDE.budget:,} tokens" in text  # no pool in the ledger yet: the plan's limit
    assert "#1   stream ok" in text
    panel = _render(view.explore_panel("/x/bbnet", "/w/ledger.db", GPT.bottle, "python -m demo.agent", 4242))
    assert "/x/bbnet dashboard --db /w/ledger.db" in panel and "kill -TERM 4242" in panel
