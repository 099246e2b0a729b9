"""``bbnet bottle egress NAME [FILE | --default]``: show or set a bottle's egress policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bbnet.budget_input import operator_actor
from bbnet.clikit import CliError, DbOpt, JsonOpt, SettingsOpt, console, open_ledger, print_json
from bbnet.names import bottle_name

FileArg = Annotated[
    Path | None, typer.Argument(help="Policy file (YAML: presets, allow rules)", show_default=False)
]


def egress(
    name: Annotated[str, typer.Argument(help="Bottle name")],
    file: FileArg = None,
    default: Annotated[
        bool, typer.Option("--default", help="Back to the host default (settings' egress:)")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit log")] = "",
    settings: SettingsOpt = None,
    db: DbOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Give the bottle its own egress policy (it replaces the host default), go back to the default,
    or (with neither) show the policy in force."""
    from bbnet import settings as settings_mod
    from bbnet.egress import PolicyDoc, describe
    from bbnet.egress_ops import policy_json

    bottle_name(name)
    if file is not None and default:
        raise CliError("give a policy FILE or --default, not both")
    text = (
        policy_json(settings_mod.load_policy(file)) if file is not None else None
    )  # checked before any write
    with open_ledger(db, create=False) as ledger:
        if ledger.get_bottle(name) is None:
            raise CliError(f"no bottle named {name!r}")
        if file is not None or default:
            ledger.set_egress(name, text, operator_actor(), reason)
        own = ledger.egress_policies().get(name)
    doc = PolicyDoc.model_validate_json(own) if own is not None else settings_mod.load(settings).egress
    source = "bottle" if own is not None else "host default"
    if json_:
        print_json({"bottle": name, "source": source, "policy": json.loads(policy_json(doc))})
    else:
        console.print(f"bottle {name}: egress {describe(doc)} ({source})", markup=False, highlight=False)


def mount(bottle_app: typer.Typer) -> None:
    bottle_app.command("egress")(egress)
