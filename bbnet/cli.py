"""The `bbnet` command: the root Typer app, mounting each plane's commands."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from bbnet.budget_input import operator_actor, parse_budget, save_budget
from bbnet.clikit import CliError, DbOpt, JsonOpt, SettingsOpt, console, open_ledger, print_json, run_app
from bbnet.ledger import Ledger, LedgerError
from bbnet.limits import SettingsError
from bbnet.model import MICROS_PER_USD, PoolView
from bbnet.names import NameError_

app = typer.Typer(
    name="bbnet",
    help="Egress control plane for sandboxed AI agents: meter LLM calls, enforce budgets, cut bottles off.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
budget_app = typer.Typer(help="Budgets: nested pools of tokens and USD.", no_args_is_help=True)
bottle_app = typer.Typer(help="Bottles: the sandboxes bbnet meters and enforces.", no_args_is_help=True)
ledger_app = typer.Typer(help="The ledger file.", no_args_is_help=True)
settings_app = typer.Typer(help="The host settings file.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")
app.add_typer(bottle_app, name="bottle")
app.add_typer(ledger_app, name="ledger")
app.add_typer(settings_app, name="settings")
meter_app = typer.Typer(
    help="The meter: the mitmproxy addon at the bottles' only way out.", no_args_is_help=True
)
app.add_typer(meter_app, name="meter")

USER_ERRORS = (CliError, LedgerError, NameError_, SettingsError, ValueError)


def _amount(unit: str, value: int) -> str:
    return f"${value / MICROS_PER_USD:,.4f}" if unit == "usd" else f"{value:,}"


def _pool_json(p: PoolView) -> dict[str, object]:
    scale = MICROS_PER_USD if p.unit == "usd" else 1
    return {
        "scope": p.scope, "provider": p.provider, "unit": p.unit, "period": p.period,
        "period_start": p.period_start, "limit": p.limit / scale, "used": p.used / scale,
        "reserved": p.reserved / scale, "remaining": p.remaining / scale, "exhausted": p.exhausted,
    }  # fmt: skip


@budget_app.command("set", context_settings={"ignore_unknown_options": True})
def budget_set(
    scope: Annotated[str, typer.Argument(help="global, bottle:NAME (or NAME) or agent:BOTTLE/AGENT")],
    provider: Annotated[str, typer.Argument(help="Provider key (anthropic, openai, ...) or '*' for all")],
    limit: Annotated[str, typer.Argument(help="Tokens (500000, 500k, 5M) or USD (20, 12.50)")],
    unit: Annotated[str, typer.Option(help="tokens or usd")] = "tokens",
    period: Annotated[str, typer.Option(help="total, day, week or month (UTC)")] = "total",
    db: DbOpt = None,
    settings: SettingsOpt = None,
) -> None:
    """Create or change a budget. A call is admitted only if every pool on its path has room."""
    from bbnet import settings as settings_mod  # pydantic: only for commands that read settings

    known = settings_mod.load(settings).provider_keys()
    budget = parse_budget(scope, provider, limit, unit, period, known)
    # a bottle's or agent's budget needs the bottle, so only a global one may start a new ledger
    with open_ledger(db, create=budget.scope.kind == "global", settings=settings) as ledger:
        save_budget(ledger, budget, known, operator_actor())
    console.print(
        f"budget {budget.scope} {budget.provider}: {_amount(unit, budget.limit)} {unit} per {period}"
    )


@budget_app.command("list")
def budget_list(db: DbOpt = None, settings: SettingsOpt = None, json_: JsonOpt = False) -> None:
    """Every pool in its current period: limit, used, reserved, remaining; with a fleet (settings'
    ``fleet:``), the fleet's totals too: each global pool and each host's slice of it."""
    from bbnet import fleet_cli
    from bbnet import settings as settings_mod

    fleet = settings_mod.load(settings).fleet
    with open_ledger(db, settings=settings) as ledger:
        pools = ledger.pools()
    totals = fleet_cli.fleet_totals(fleet.url) if fleet else None
    if json_:
        host = [_pool_json(p) for p in pools]
        print_json(host if totals is None else {"host": host, "fleet": totals})
        return
    if fleet and totals is not None:
        fleet_cli.print_fleet(fleet.url, totals)
    table = Table("scope", "provider", "unit", "period", "limit", "used", "reserved", "remaining")
    for p in pools:
        style = "red" if p.exhausted else None
        table.add_row(
            p.scope,
            p.provider,
            p.unit,
            p.period,
            _amount(p.unit, p.limit),
            _amount(p.unit, p.used),
            _amount(p.unit, p.reserved),
            _amount(p.unit, p.remaining),
            style=style,
        )
    console.print(table if pools else "no budgets (bbnet budget set SCOPE PROVIDER LIMIT)")


@bottle_app.command("list")
def bottle_list(db: DbOpt = None, json_: JsonOpt = False) -> None:
    """The bottle registry: name, parent, state, policy, veth, addresses."""
    with open_ledger(db) as ledger:
        bottles = ledger.bottles()
        states = {s.bottle: s for s in ledger.desired_states()}
    rows = [
        {"name": b.name, "parent": b.parent, "state": states[b.name].state if b.name in states else "open",
         "policy": b.policy, "netns": b.netns, "veth": b.veth, "addresses": list(b.addresses),
         "cgroup": b.cgroup, "managed": b.managed, "created_at": b.created_at}
        for b in bottles
    ]  # fmt: skip
    if json_:
        print_json(rows)
        return
    table = Table("name", "parent", "state", "policy", "veth", "addresses")
    for b in bottles:
        state = states[b.name].state if b.name in states else "open"
        table.add_row(b.name, b.parent or "", state, b.policy, b.veth or "", ", ".join(b.addresses))
    console.print(table if rows else "no bottles")


@ledger_app.command("info")
def ledger_info(db: DbOpt = None, json_: JsonOpt = False) -> None:
    """Path, schema version, file sizes and row counts."""
    with open_ledger(db, create=False) as ledger:
        info = ledger.info()
    if json_:
        print_json(info)
        return
    mode = f" (mode {info['mode']})" if info["mode"] else ""
    console.print(f"path            {info['path']}{mode}")
    console.print(f"schema version  {info['schema_version']}")
    console.print("size            " + ", ".join(f"{k} {v:,} B" for k, v in info["bytes"].items()))
    console.print("rows            " + ", ".join(f"{k} {v:,}" for k, v in info["rows"].items()))


@settings_app.command("check")
def settings_check(settings: SettingsOpt = None, json_: JsonOpt = False) -> None:
    """Validate the settings file and show the budgets it defines."""
    from bbnet import settings as settings_mod  # pydantic: only for commands that read settings

    s = settings_mod.load(settings, required=True)
    if json_:
        print_json(s.model_dump(by_alias=True, mode="json"))
        return
    console.print(f"{settings or settings_mod.default_path()}: ok")
    for b in s.global_budgets():
        console.print(f"  {b.scope} {b.provider}: {_amount(b.unit, b.limit)} {b.unit} per {b.period}")


@settings_app.command("apply")
def settings_apply(settings: SettingsOpt = None, db: DbOpt = None) -> None:
    """Write the settings file's global budgets into the ledger (CLI-set budgets win)."""
    from bbnet import settings as settings_mod  # pydantic: only for commands that read settings

    s = settings_mod.load(settings, required=True)
    with Ledger.open(s.ledger_target(db)) as ledger:
        result = ledger.sync_budgets(s.global_budgets())
    console.print(f"budgets from settings: {result['changed']} changed, {result['removed']} removed")


def _mount_planes() -> None:
    """Each plane adds its own commands; bbnet/ stays free of their imports until here."""
    from analytics import cli as analytics_cli
    from bbnet import egress_cli
    from dashboard import cli as dashboard_cli
    from demo import cli as demo_cli
    from enforcer import cli as enforcer_cli
    from enforcer import service_cli
    from meter import cli as meter_cli
    from meter import run_cli, sim_cli

    meter_cli.mount(meter_app)
    egress_cli.mount(bottle_app)
    run_cli.mount(meter_app)
    sim_cli.mount(app)
    enforcer_cli.mount(app, bottle_app)
    service_cli.mount(app)
    analytics_cli.mount(app)
    dashboard_cli.mount(app)
    demo_cli.mount(app)


_mount_planes()


def main() -> None:
    """Entry point (the ``bbnet`` script)."""
    sys.exit(run_app(app, sys.argv[1:], USER_ERRORS))
