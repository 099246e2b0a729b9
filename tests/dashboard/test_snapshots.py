"""Snapshots of the main screens at 80×24, with a fixed clock and fixed ledger times.

Update them after an intended change with ``pytest tests/dashboard --snapshot-update`` and look at
the SVGs under ``__snapshots__`` before committing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from bbnet.ledger import Ledger
from dashboard.widgets import BottleTable

from .conftest import fixed_app

Snap = Callable[..., bool]


def _select(bottle: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        table = pilot.app.query_one(BottleTable)
        table.move_cursor(row=table.get_row_index(bottle))
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare: Snap, app_ledger: Ledger) -> None:
    assert snap_compare(fixed_app(app_ledger), terminal_size=(80, 24))


def test_cut_off_bottle_sorted_by_spend(snap_compare: Snap, app_ledger: Ledger) -> None:
    assert snap_compare(
        fixed_app(app_ledger), terminal_size=(80, 24), press=["s", "s", "s", "s"], run_before=_select("tb")
    )


def test_filtered(snap_compare: Snap, app_ledger: Ledger) -> None:
    assert snap_compare(fixed_app(app_ledger), terminal_size=(80, 24), press=["slash", "t", "e", "a", "m"])


def test_kill_confirmation(snap_compare: Snap, app_ledger: Ledger) -> None:
    assert snap_compare(fixed_app(app_ledger), terminal_size=(80, 24), press=["k"], run_before=_select("ta"))


def test_budget_form(snap_compare: Snap, app_ledger: Ledger) -> None:
    assert snap_compare(
        fixed_app(app_ledger), terminal_size=(80, 24), press=["b", "5", "0", "k"], run_before=_select("ta")
    )


def test_help(snap_compare: Snap, app_ledger: Ledger) -> None:
    assert snap_compare(fixed_app(app_ledger), terminal_size=(80, 24), press=["question_mark"])
