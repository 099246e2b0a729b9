"""``bbnet dashboard``: mounted by the lead's ``bbnet.cli`` through :func:`mount`.

textual and the enforcer are imported inside the command: this module is imported by every
``bbnet`` command, which must start fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bbnet.clikit import CliError, DbOpt, SettingsOpt, open_ledger

MIN_REFRESH, MAX_REFRESH = 0.05, 60.0

RefreshOpt = Annotated[
    float,
    typer.Option(
        "--refresh", help="Seconds between ledger polls (a poll that finds nothing new is one query)"
    ),
]


def dashboard(db: DbOpt = None, refresh: RefreshOpt = 0.5, settings: SettingsOpt = None) -> None:
    """Live usage against budget for every bottle; cut off, freeze or kill one at a keystroke."""
    if not MIN_REFRESH <= refresh <= MAX_REFRESH:
        raise CliError(
            f"invalid --refresh {refresh}: expected seconds between {MIN_REFRESH} and {MAX_REFRESH:.0f}"
        )
    from bbnet import settings as settings_mod  # pydantic: only for commands that read settings
    from dashboard.app import Dashboard

    known = settings_mod.load(settings).provider_keys()  # budgets may name the settings' extra providers
    with open_ledger(db, create=False) as ledger:
        Dashboard(ledger, refresh=refresh, known_providers=known).run()


def mount(root: typer.Typer) -> None:
    """Add ``dashboard`` to ``bbnet``."""
    root.command("dashboard")(dashboard)
