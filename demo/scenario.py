"""What the demo does and what it must prove, as plain data and pure functions.

The demo's shell (``demo.run``) starts processes and talks to the kernel; everything it decides —
the bottles and their budgets, each agent's command line, how an agent's output adds up, whether
the run proved what it set out to prove — is here, so it is unit-tested without root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Away from the default pool's first leases (10.243.0.0/…) and the tests' 10.243.128.0/20.
DEMO_POOL = "10.243.250.0/24"
AGENT_TIMEOUT_S = 1.0  # a cut-off bottle cannot connect: keep that wait short
# a call in flight when its bottle is cut waits this long (the kernel drops even the reset the
# host sends it); an open bottle's call on a busy machine must not come near it
AGENT_READ_TIMEOUT_S = 10.0
AGENT_GIVE_UP_AFTER = 2  # connection failures in a row before an agent stops on its own
OUTCOMES = ("ok", "denied", "error")


@dataclass(frozen=True)
class AgentPlan:
    """One bottle of the demo and the agent loop that runs in it."""

    bottle: str
    sdk: str  # anthropic | openai: the official SDK the agent uses
    provider: str  # the budget's provider key
    budget: int  # tokens
    calls: int  # the loop's call count; the budget, not the loop, is meant to end it
    interval: float  # seconds between calls, so the live view has something to show
    stream_every: int  # every Nth call streams

    @property
    def budget_flag(self) -> str:
        return f"{self.provider}={self.budget}"


# demo-claude runs out (≈19 calls of 128 tokens fit in 2,500); demo-gpt has room to spare and keeps
# calling while its neighbour is cut off.
CLAUDE = AgentPlan("demo-claude", "anthropic", "anthropic", 2_500, 40, 0.15, 2)
GPT = AgentPlan("demo-gpt", "openai", "openai", 50_000, 30, 0.25, 3)
PLANS = (CLAUDE, GPT)
RAISED_BUDGET = 4_000  # demo-claude's budget after the operator raises it
CALLS_AFTER_RESTORE = 4
MAX_TOKENS = 64


def agent_args(plan: AgentPlan, proxy: str, ca: str, calls: int | None = None) -> list[str]:
    """Python's arguments to run ``demo.agent`` for ``plan``'s bottle (through ``bbnet bottle exec``)."""
    return [
        "-m", "demo.agent", "--sdk", plan.sdk, "--proxy", proxy, "--ca", ca,
        "--calls", str(plan.calls if calls is None else calls), "--max-tokens", str(MAX_TOKENS),
        "--stream-every", str(plan.stream_every), "--interval", str(plan.interval),
        "--timeout", str(AGENT_TIMEOUT_S), "--read-timeout", str(AGENT_READ_TIMEOUT_S),
        "--give-up-after", str(AGENT_GIVE_UP_AFTER),
    ]  # fmt: skip


def parse_agent_line(line: str) -> dict[str, Any] | None:
    """One of ``demo.agent``'s JSON lines, or None for anything else it printed."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("outcome") not in OUTCOMES:
        return None
    return event


@dataclass(frozen=True)
class Tally:
    """What one agent saw so far."""

    ok: int = 0
    denied: int = 0
    error: int = 0
    streamed: int = 0  # calls that streamed and succeeded
    tokens: int = 0  # input + output tokens the SDK reported on successful calls
    last_error: str = ""

    @property
    def calls(self) -> int:
        return self.ok + self.denied + self.error

    def as_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "ok": self.ok, "denied": self.denied, "error": self.error,
                "streamed": self.streamed, "tokens": self.tokens, "last_error": self.last_error}  # fmt: skip


def tally(events: Iterable[Mapping[str, Any]]) -> Tally:
    ok = denied = error = streamed = tokens = 0
    last_error = ""
    for e in events:
        if e["outcome"] == "ok":
            ok += 1
            streamed += bool(e.get("stream"))
            tokens += int(e.get("input_tokens", 0)) + int(e.get("output_tokens", 0))
        else:
            denied += e["outcome"] == "denied"
            error += e["outcome"] == "error"
            last_error = str(e.get("error", ""))
    return Tally(ok, denied, error, streamed, tokens, last_error)


def report_totals(report: Mapping[str, Any]) -> dict[str, Any]:
    """Totals of ``bbnet report cost --format json`` over its rows."""
    rows = report["rows"]
    return {
        "calls": sum(int(r["calls"]) for r in rows),
        "tokens": sum(int(r["tokens"]) for r in rows),
        "cost_usd": round(sum(float(r["cost_usd"] or 0) for r in rows), 9),
    }


def ledger_totals(usage_rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The same totals straight from the ledger's ``usage`` rows (tokens = input + output)."""
    rows = list(usage_rows)
    return {
        "calls": len(rows),
        "tokens": sum(int(r["input_tokens"]) + int(r["output_tokens"]) for r in rows),
        "cost_usd": round(sum(float(r["cost_usd"] or 0) for r in rows), 9),
    }


def problems(summary: Mapping[str, Any]) -> list[str]:
    """Everything the run failed to show; empty when the demo proved its point.

    ``summary`` is the demo's JSON summary (see ``demo.run``); each check names what was expected.
    """
    found: list[str] = []
    agents, probes, cutoff = summary["agents"], summary["probes"], summary["cutoff"]
    claude, gpt = agents[CLAUDE.bottle], agents[GPT.bottle]
    if claude["ok"] == 0 or gpt["ok"] == 0:
        found.append("an agent never got an answer through the meter")
    if not (claude["streamed"] and gpt["streamed"] and claude["ok"] > claude["streamed"]):
        found.append("the agents did not make both streaming and non-streaming calls")
    if cutoff.get("actor") != "controller" or not cutoff.get("reason", "").startswith("budget exhausted"):
        found.append(f"{CLAUDE.bottle} was not cut off by the controller for its budget")
    if not cutoff.get("in_kernel") or cutoff.get("dropped_packets", 0) <= 0:
        found.append(f"the kernel did not hold {CLAUDE.bottle} in its cutoff set, dropping packets")
    for bottle in (CLAUDE.bottle, GPT.bottle):
        before = probes["before"][bottle]
        if not before["proxy"] or before["bypass"]:
            found.append(f"{bottle} could not reach the proxy, or could go around it, before any cutoff")
    after = probes["after_cutoff"]
    if after["proxy"] or after["bypass"] or after["api_call"] == "ok":
        found.append(f"{CLAUDE.bottle} still reached something after its cutoff")
    neighbour_open = summary["states"]["during_cutoff"][GPT.bottle] == "open" and after["neighbour_proxy"]
    if gpt["denied"] or gpt["error"] or not neighbour_open:
        found.append(f"{GPT.bottle} was affected by its neighbour's cutoff")
    restored = summary["restored"]
    if restored["state"] != "open" or restored["ok"] != restored["calls"] or restored["calls"] == 0:
        found.append(f"{CLAUDE.bottle} did not work again after the restore")
    if summary["report_totals"] != summary["ledger_totals"]:
        found.append("bbnet report cost does not add up to the ledger's usage")
    return found


def proxy_endpoint(label: str) -> tuple[str, int]:
    """A bottle's ``proxy`` label (``tcp:ADDRESS:PORT``) → (address, port)."""
    parts = label.split(":")
    if len(parts) != 3 or parts[0] != "tcp" or not parts[1] or not parts[2].isdigit():
        raise ValueError(f"invalid proxy label {label!r}: expected tcp:ADDRESS:PORT")
    return parts[1], int(parts[2])
