"""The app driven by textual's Pilot against a real ledger file."""

from __future__ import annotations

import time

import pytest

from bbnet.ledger import Ledger
from bbnet.model import UsageRecord
from dashboard.app import Dashboard
from dashboard.modals import BudgetScreen, ConfirmKill, HelpScreen
from dashboard.widgets import BottleTable

from .conftest import cell, fixed_app

pytestmark = pytest.mark.asyncio


async def test_a_usage_commit_appears_on_the_next_refresh(app_ledger: Ledger, writer: Ledger) -> None:
    app = Dashboard(app_ledger, refresh=0.5, actor="operator:test")  # the real clock
    async with app.run_test(size=(80, 24)) as pilot:
        assert cell(app, "solo", "tokens") == "0"
        writer.commit("live-1", UsageRecord("solo", "main", "openai", "gpt-4o", 1000, 234, ts=time.time()))
        committed = time.monotonic()
        while cell(app, "solo", "tokens") == "0" and time.monotonic() - committed < 30:
            await pilot.pause(0.05)
        assert cell(app, "solo", "tokens") == "1.23k"
        assert cell(app, "solo", "last").removesuffix("s").isdigit()  # seconds ago, however slow the refresh
        assert cell(app, "solo", "providers") == "openai"


async def test_an_action_by_the_controller_reaches_the_feed_and_the_row(
    app_ledger: Ledger, writer: Ledger
) -> None:
    app = fixed_app(app_ledger)
    async with app.run_test(size=(80, 24)) as pilot:
        writer.set_desired_state("solo", "frozen", "budget exhausted", "controller")
        writer.record_action("solo", "freeze", "controller", "budget exhausted", "ok", 2.0)
        app.refresh_now()
        await pilot.pause()
        assert cell(app, "solo", "state") == "frozen"
        feed_text = "\n".join(line.text for line in app.query_one("#feed").lines)  # type: ignore[attr-defined]
        assert "solo freeze" in feed_text
        assert "solo frozen budget exhausted (controller)" in str(app.query_one("#detail-text").render())


async def test_kill_needs_confirmation(app_ledger: Ledger, writer: Ledger) -> None:
    app = fixed_app(app_ledger)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(BottleTable)
        table.move_cursor(row=table.get_row_index("solo"))
        for cancel in ("n", "escape", "enter"):  # Enter lands on Cancel, which has the focus
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmKill)
            assert app.screen.bottle == "solo"
            await pilot.press(cancel)
            assert not isinstance(app.screen, ConfirmKill)
        await app.workers.wait_for_complete()
        assert writer.desired_state("solo").state == "open"
        assert writer.actions(bottle="solo") == []


async def test_budget_form_validates_and_saves(app_ledger: Ledger, writer: Ledger) -> None:
    app = fixed_app(app_ledger)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(BottleTable)
        table.move_cursor(row=table.get_row_index("solo"))
        await pilot.press("b")
        assert isinstance(app.screen, BudgetScreen)
        form = app.screen.form()
        assert (form.scope, form.provider, form.limit) == ("bottle:solo", "*", "")
        await pilot.press("1", "0", "x", "enter")
        assert isinstance(app.screen, BudgetScreen)  # still open, with the reason
        assert "invalid token limit '10x'" in str(app.screen.query_one("#budget-error").render())
        await pilot.press("backspace", "k", "enter")
        assert not isinstance(app.screen, BudgetScreen)
        await pilot.pause()
        detail = app.feed.detail("solo")
        assert detail is not None
        assert [(p.scope, p.limit) for p in detail.pools][-1] == ("bottle:solo", 10_000)
    budgets = {(str(b.scope), b.provider, b.unit): b.limit for b in writer.budgets()}
    assert budgets["bottle:solo", "*", "tokens"] == 10_000
    [audit] = writer.actions(bottle="solo")
    assert (audit.action, audit.actor, audit.result) == ("budget", "operator:test", "ok")


async def test_sort_filter_and_help(app_ledger: Ledger) -> None:
    app = fixed_app(app_ledger)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(BottleTable)
        order = lambda: [str(k.value) for k in table.rows]  # noqa: E731
        assert order() == ["solo", "ta", "tb", "team"]
        await pilot.press("s")  # state
        assert order()[0] == "tb" and app.sort_key == "state"
        await pilot.press("s")  # tokens, most first (a tie goes by name)
        assert order() == ["tb", "ta", "team", "solo"]
        await pilot.press("o")
        assert order() == ["solo", "team", "ta", "tb"]
        await pilot.press("slash", "c", "u", "t")
        assert order() == ["tb"]
        await pilot.press("escape")
        assert len(order()) == 4
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_an_unreadable_ledger_keeps_the_last_view(app_ledger: Ledger, writer: Ledger) -> None:
    app = fixed_app(app_ledger)
    async with app.run_test(size=(80, 24)) as pilot:
        app_ledger.close()  # what a vanished or broken ledger file looks like to the poll
        writer.record_action("ta", "cutoff", "controller", "", "ok")
        app.refresh_now()
        await pilot.pause()
        assert "ledger unreadable" in str(app.query_one("#status").render())
        assert cell(app, "ta", "tokens") == "10k"
