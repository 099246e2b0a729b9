"""What the demo shows, built from plain data (pure: rich renderables in, nothing printed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bbnet.model import PoolView
from demo.scenario import AgentPlan, Tally, tally

BAR_WIDTH = 24
STATE_STYLE = {"open": "green", "cutoff": "bold red", "frozen": "cyan", "killed": "red"}


def bar(used: int, limit: int, width: int = BAR_WIDTH) -> Text:
    """A budget bar: filled in proportion to ``used`` / ``limit``, red when full."""
    share = 1.0 if limit <= 0 else min(used / limit, 1.0)
    filled = round(share * width)
    style = "red" if share >= 1.0 or used >= limit else "yellow" if share > 0.8 else "green"
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


def spend_table(
    plans: tuple[AgentPlan, ...],
    pools: list[PoolView],
    tallies: Mapping[str, Tally],
    states: Mapping[str, str],
    costs: Mapping[str, float],
) -> Table:
    """One row per bottle: its state, its agent's calls, its token budget being spent and the USD
    the ledger priced its calls at."""
    table = Table(title="live spend (from the ledger)", title_justify="left")
    numeric = ("calls ok", "denied", "errors", "USD")
    for column in ("bottle", "state", "SDK", *numeric, "budget", "used / limit"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for plan in plans:
        pool = next(
            (p for p in pools if p.scope == f"bottle:{plan.bottle}" and p.provider == plan.provider), None
        )
        t = tallies.get(plan.bottle, Tally())
        state = states.get(plan.bottle, "open")
        used = pool.used + pool.reserved if pool else 0
        limit = pool.limit if pool else plan.budget
        table.add_row(
            plan.bottle, Text(state, style=STATE_STYLE.get(state, "")), plan.sdk, str(t.ok),
            str(t.denied), str(t.error), f"${costs.get(plan.bottle, 0.0):.4f}", bar(used, limit),
            f"{used:,} / {limit:,} tokens",
        )  # fmt: skip
    return table


def probe_table(title: str, rows: list[tuple[str, str, Mapping[str, Any]]]) -> Table:
    """Connection attempts from inside bottles: (bottle, what was tried, the probe's result)."""
    table = Table(title=title, title_justify="left")
    for column in ("from bottle", "tried", "target", "result"):
        table.add_column(column)
    for bottle, what, result in rows:
        outcome = (
            Text("connected", style="green")
            if result["connected"]
            else Text(f"blocked ({result['error']})", style="red")
        )
        table.add_row(bottle, what, result["target"], outcome)
    return table


def agent_lines(events: Sequence[Mapping[str, Any]], last: int = 4) -> list[Text]:
    """The last few calls an agent made, one line each."""
    lines = []
    for e in events[-last:]:
        kind = "stream" if e.get("stream") else "create"
        if e["outcome"] == "ok":
            lines.append(
                Text(
                    f"  #{e['i']:<3} {kind:<6} ok      in={e['input_tokens']} out={e['output_tokens']}",
                    "green",
                )
            )
        else:
            style = "yellow" if e["outcome"] == "denied" else "red"
            lines.append(
                Text(f"  #{e['i']:<3} {kind:<6} {e['outcome']:<7} {str(e.get('error', ''))[:60]}", style)
            )
    return lines


def live_frame(
    plans: tuple[AgentPlan, ...],
    pools: list[PoolView],
    events: Mapping[str, Sequence[Mapping[str, Any]]],
    states: Mapping[str, str],
    costs: Mapping[str, float],
) -> Group:
    """The live view: the spend table, then each agent's last calls."""
    tallies = {bottle: tally(e) for bottle, e in events.items()}
    lines: list[Text] = []
    for plan in plans:
        lines += [
            Text(f"{plan.bottle} ({plan.sdk} SDK):", style="bold"),
            *agent_lines(events.get(plan.bottle, [])),
        ]
    return Group(spend_table(plans, pools, tallies, states, costs), *lines)


def explore_panel(bbnet: str, db: str, bottle: str, agent_command: str, pid: int) -> Panel:
    """``--keep``: what to try while the demo stays up, and how to stop it."""
    return Panel(
        "Still running (the meter, the simulator and both bottles). In another terminal:\n"
        f"  {bbnet} dashboard --db {db}\n  {bbnet} status --db {db}\n  {bbnet} report usage --db {db}\n"
        f"  {bbnet} bottle exec --db {db} {bottle} -- {agent_command} --calls 5\n"
        f"  {bbnet} cutoff --db {db} {bottle}\n"
        f"Stop it and clean up: Ctrl-C here (or kill -TERM {pid}).",
        title="--keep",
        border_style="green",
    )
