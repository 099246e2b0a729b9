"""The enforcer's commands: ``bbnet bottle create|register|exec|rm`` and ``bbnet cutoff|restore|
freeze|thaw|kill|status``. The lead's ``bbnet.cli`` calls :func:`mount`."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bbnet.budget_input import operator_actor
from bbnet.clikit import CliError, DbOpt, JsonOpt, SettingsOpt, console, open_ledger, print_json
from bbnet.ledger import Ledger
from bbnet.names import bottle_name

if TYPE_CHECKING:
    from bbnet.settings import Settings
from enforcer import actions, bottles, cgroups
from enforcer.errors import EnforcerError
from enforcer.nft import Nft
from netrules.types import RulesError

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: kept in the audit log")]
PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="What a spent budget does: cutoff, freeze or kill [default: settings' shutdown]",
        show_default=False,
    ),
]
BudgetOpt = Annotated[list[str] | None, typer.Option("--budget", help="PROVIDER=LIMIT tokens (repeatable)")]
AllowOpt = Annotated[
    list[str] | None,
    typer.Option("--allow", help="[tcp|udp:]IPV4:PORT the bottle may reach directly (repeatable)"),
]
EgressOpt = Annotated[
    Path | None,
    typer.Option(
        "--egress",
        help="The bottle's own egress policy file [default: settings' egress:]",
        show_default=False,
    ),
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        "--proxy-port", help="The meter proxy's port [default: settings' proxy_port]", show_default=False
    ),
]


def _guard(fn: Any) -> Any:
    """Turn enforcer and rules errors into the CLI's one-line error (exit code 2)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (EnforcerError, RulesError) as exc:
            raise CliError(str(exc)) from None

    return wrapper


def _ledger_holding(db: str | None, name: str) -> Ledger:
    """The ledger a command on an existing bottle reads: the name is checked first, and a missing
    ledger is an error (it holds no bottle), never created."""
    bottle_name(name)
    return open_ledger(db, create=False)


def _settings(path: str | None) -> Settings:
    from bbnet import settings as settings_mod

    return settings_mod.load(path)


def _launch(name: str, parent: str | None, policy: str | None, budget: list[str] | None, allow: list[str] | None,
            proxy_port: int | None, s: Settings, egress: Path | None = None) -> bottles.Launch:  # fmt: skip
    """The launch, with what the command line leaves out taken from the settings file."""
    from bbnet.egress_ops import policy_json
    from bbnet.settings import load_policy

    defaults = tuple(s.launch_budgets(name)) if bottle_name(name) else ()
    own = policy_json(load_policy(egress)) if egress is not None else None
    return bottles.Launch(name, parent, policy or s.shutdown, tuple(budget or ()), tuple(allow or ()),
                          proxy_port or s.proxy_port, default_budgets=defaults, egress=own)  # fmt: skip


def _show(made: Any, json_: bool) -> None:
    if json_:
        print_json(_bottle_json(made))
    else:
        console.print(
            f"bottle {made.name}: {made.veth} {', '.join(made.addresses)} proxy {made.labels['proxy']}"
        )


def _bottle_json(b: Any) -> dict[str, Any]:
    return {"name": b.name, "parent": b.parent, "netns": b.netns, "veth": b.veth, "addresses": list(b.addresses),
            "cgroup": b.cgroup, "policy": b.policy, "managed": b.managed, "labels": b.labels}  # fmt: skip


def create(
    name: Annotated[str, typer.Argument(help="Bottle name")],
    parent: Annotated[str | None, typer.Option("--parent", help="Parent bottle (budgets nest)")] = None,
    addr: Annotated[
        str | None, typer.Option("--addr", help="Bottle address CIDR [default: next /30 of the pool]")
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(
            "--pool",
            envvar="BBNET_ADDR_POOL",
            help="Address pool [default: settings' address_pool]",
            show_default=False,
        ),
    ] = None,
    policy: PolicyOpt = None,
    budget: BudgetOpt = None,
    allow: AllowOpt = None,
    egress: EgressOpt = None,
    proxy_port: PortOpt = None,
    settings: SettingsOpt = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Make a bottle: netns, veth pair, addresses, route, cgroup, rules; undone on any error."""
    s = _settings(settings)
    launch = _launch(name, parent, policy, budget, allow, proxy_port, s, egress)
    with open_ledger(db) as ledger:
        made = bottles.create(ledger, launch, addr=addr, pool=pool or s.address_pool)
    _show(made, json_)


def register(
    name: Annotated[str, typer.Argument(help="Bottle name")],
    netns: Annotated[str | None, typer.Option("--netns", help="Named network namespace")] = None,
    pid: Annotated[int | None, typer.Option("--pid", help="A process in the namespace")] = None,
    veth: Annotated[str | None, typer.Option("--veth", help="Host end of the bottle's veth")] = None,
    addr: Annotated[
        list[str] | None, typer.Option("--addr", help="Bottle address (with --veth; repeatable)")
    ] = None,
    proxy: Annotated[
        str | None, typer.Option("--proxy", help="Proxy address [default: the bottle's gateway]")
    ] = None,
    cgroup: Annotated[
        str | None, typer.Option("--cgroup", help="The bottle's cgroup v2 group (for freeze/kill)")
    ] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="Parent bottle")] = None,
    policy: PolicyOpt = None,
    budget: BudgetOpt = None,
    allow: AllowOpt = None,
    egress: EgressOpt = None,
    proxy_port: PortOpt = None,
    settings: SettingsOpt = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Adopt an existing namespace (a container's) found by netns name, PID or host veth."""
    found = bottles.find(netns=netns, pid=pid, veth=veth, addrs=tuple(addr or ()), proxy=proxy)
    with open_ledger(db) as ledger:
        made = bottles.register(
            ledger,
            _launch(name, parent, policy, budget, allow, proxy_port, _settings(settings), egress),
            found,
            cgroup=cgroup,
        )
    _show(made, json_)


def exec_(
    name: Annotated[str, typer.Argument(help="Bottle name")],
    command: Annotated[list[str], typer.Argument(help="Command to run, after --")],
    db: DbOpt = None,
) -> None:
    """Run a command inside the bottle (its netns and cgroup)."""
    with _ledger_holding(db, name) as ledger:
        bottle = bottles.get(ledger, name)
    bottles.exec_in(bottle, command[1:] if command[:1] == ["--"] else command)


def rm(name: Annotated[str, typer.Argument(help="Bottle name")], db: DbOpt = None) -> None:
    """Remove the bottle's rules and what bbnet made for it; the ledger keeps its history."""
    with _ledger_holding(db, name) as ledger:
        bottles.remove(ledger, name)
    console.print(f"bottle {name} removed")


def _action(action: str) -> Any:
    def command(
        name: Annotated[str, typer.Argument(help="Bottle name")], reason: ReasonOpt = "", db: DbOpt = None
    ) -> None:
        with _ledger_holding(db, name) as ledger:
            state = actions.act(ledger, action, name, reason=reason, actor=operator_actor())
        console.print(f"bottle {name}: {state}")

    command.__doc__ = {
        "cutoff": "Cut the bottle off in the kernel and close its established connections to the host.",
        "restore": "Undo cutoff and freeze.",
        "freeze": "Cut off and freeze every process of the bottle (cgroup.freeze).",
        "thaw": "Resume a frozen bottle's processes; its network stays cut off until restore.",
        "kill": "Cut off, kill every process (cgroup.kill), remove the veth and netns bbnet made.",
    }[action]
    return _guard(command)


def status(db: DbOpt = None, json_: JsonOpt = False) -> None:
    """Each bottle's desired state beside what the kernel holds: cut off, packets dropped, frozen."""
    with open_ledger(db) as ledger:
        rows = ledger.bottles()
        states = {s.bottle: s for s in ledger.desired_states()}
    counters = Nft().cutoff_counters() if os.geteuid() == 0 else {}
    report = []
    for b in rows:
        group = Path(b.cgroup) if b.cgroup else None
        frozen = group is not None and (group / "cgroup.events").is_file() and "frozen 1" in (
            group / "cgroup.events"
        ).read_text()  # fmt: skip
        state = states.get(b.name)
        report.append({
            "name": b.name, "desired": state.state if state else "open", "reason": state.reason if state else "",
            "veth": b.veth, "cut": b.veth in counters, "dropped_packets": counters.get(b.veth or "", (0, 0))[0],
            "frozen": frozen, "processes": len(cgroups.processes(group)) if group else None,
        })  # fmt: skip
    if json_:
        print_json(report)
        return
    for r in report:
        console.print(
            f"{r['name']:<20} {r['desired']:<7} cut={r['cut']!s:<5} dropped={r['dropped_packets']:<8} "
            f"frozen={r['frozen']!s:<5} processes={r['processes']} {r['reason']}"
        )
    if not report:
        console.print("no bottles")


def mount(root: typer.Typer, bottle: typer.Typer) -> None:
    """Add the enforcer's commands to ``bbnet`` (root) and ``bbnet bottle``."""
    bottle.command("create")(_guard(create))
    bottle.command("register")(_guard(register))
    bottle.command("exec", context_settings={"allow_interspersed_args": False})(_guard(exec_))
    bottle.command("rm")(_guard(rm))
    for action in actions.TARGET_STATE:
        root.command(action)(_action(action))
    root.command("status")(_guard(status))
