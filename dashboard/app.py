"""``bbnet dashboard``: the host TUI. Live usage against budget per bottle; cut one off at a key.

Every ``refresh`` seconds the app polls the ledger (cheap when nothing changed, see
:mod:`dashboard.feed`) and redraws what changed. Enforcement runs in a worker thread, so a slow
kill never freezes the screen; its result shows as a notification and in the action feed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Static

from bbnet.ledger import Ledger, LedgerError
from bbnet.providers import PROVIDER_KEYS
from dashboard.feed import FEED_ACTIONS, LedgerFeed
from dashboard.modals import BudgetScreen, ConfirmKill, HelpScreen
from dashboard.ops import (
    ACTION_ERRORS,
    BudgetForm,
    budget_from_form,
    operator_actor,
    run_action,
    save_budget,
)
from dashboard.rows import DESCENDING_BY_DEFAULT, SORT_KEYS, SORT_ORDER, BottleRow, filter_rows, sort_rows
from dashboard.widgets import ActionFeed, BottleTable, DetailPane

REDRAW_SECONDS = 1.0  # ages, burn rates and projections move with time even when nothing is new


class Dashboard(App[None]):
    TITLE = "bbnet dashboard"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { height: 1; background: $boost; padding: 0 1; }
    #bottles { height: 1fr; }
    #lower { height: 45%; min-height: 8; border-top: solid $primary-darken-2; }
    #detail { width: 3fr; padding: 0 1; }
    #feed { width: 2fr; border-left: solid $primary-darken-2; }
    #filter { display: none; height: 1; border: none; padding: 0 1; }
    #filter.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "act('cutoff')", "cut off"),
        Binding("r", "act('restore')", "restore"),
        Binding("f", "act('freeze')", "freeze"),
        Binding("t", "act('thaw')", "thaw"),
        Binding("k", "act('kill')", "kill"),
        Binding("b", "budget", "budget"),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("o", "order", "order", show=False),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        ledger: Ledger,
        *,
        refresh: float = 0.5,
        clock: Callable[[], float] = time.time,
        actor: str | None = None,
        known_providers: Iterable[str] = PROVIDER_KEYS,
    ) -> None:
        super().__init__()
        self.feed = LedgerFeed(ledger, clock)
        self.clock = clock
        self.refresh_seconds = refresh
        self.actor = actor or operator_actor()
        self.known_providers = frozenset(known_providers)
        self.sort_key = "name"
        self.descending = False
        self.filter_text = ""
        self.rows: list[BottleRow] = []
        self._drawn_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield BottleTable()
        with Horizontal(id="lower"):
            yield DetailPane(id="detail")
            yield ActionFeed(FEED_ACTIONS)
        yield Input(
            placeholder="filter: words, state:cut, parent:NAME (Enter keeps, Escape clears)", id="filter"
        )
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_now()
        self.set_interval(self.refresh_seconds, self.refresh_now)

    @property
    def table(self) -> BottleTable:
        return self.query_one(BottleTable)

    # -- live data ---------------------------------------------------------------------------

    def refresh_now(self) -> None:
        """Poll the ledger; redraw if anything changed or the last redraw is getting old."""
        try:
            poll = self.feed.poll()
        except (LedgerError, sqlite3.Error) as exc:  # keep the last picture; say why it is stale
            self.query_one("#status", Static).update(f"ledger unreadable, showing the last view: {exc}")
            return
        if poll.new_actions:
            self.query_one(ActionFeed).add(poll.new_actions)
        now = self.clock()
        if poll.changed or now - self._drawn_at >= REDRAW_SECONDS:
            self.redraw(now)

    def redraw(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.rows = self.feed.rows()
        shown = sort_rows(filter_rows(self.rows, self.filter_text), self.sort_key, self.descending)
        self.table.show(shown, now)
        self.query_one("#status", Static).update(self._status(len(shown)))
        self._show_detail(now)
        self._drawn_at = now

    def _status(self, shown: int) -> str:
        counts = {state: 0 for state in ("open", "cutoff", "frozen", "killed")}
        for row in self.rows:
            counts[row.state] += 1
        arrow = "↓" if self.descending else "↑"
        text = (
            f"{len(self.rows)} bottles: {counts['open']} open, {counts['cutoff']} cut off, "
            f"{counts['frozen']} frozen, {counts['killed']} killed · sort {self.sort_key} {arrow}"
        )
        if self.filter_text:
            text += f" · filter {self.filter_text!r}: {shown} shown"
        return text

    def _show_detail(self, now: float) -> None:
        name = self.table.selected
        self.query_one(DetailPane).show(self.feed.detail(name) if name else None, now)

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail(self.clock())

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key not in SORT_KEYS:
            return
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key, self.descending = key, key in DESCENDING_BY_DEFAULT
        self.redraw()

    # -- sort and filter ---------------------------------------------------------------------

    def action_sort(self) -> None:
        following = SORT_ORDER[(SORT_ORDER.index(self.sort_key) + 1) % len(SORT_ORDER)]
        self.sort_key, self.descending = following, following in DESCENDING_BY_DEFAULT
        self.redraw()

    def action_order(self) -> None:
        self.descending = not self.descending
        self.redraw()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.filter_text = ""
        self.table.focus()
        self.redraw()

    # -- operator actions --------------------------------------------------------------------

    def action_act(self, action: str) -> None:
        name = self.table.selected
        if name is None:
            self.notify("no bottle selected", severity="warning")
            return
        if action == "kill":
            self.push_screen(ConfirmKill(name), lambda confirmed: self._confirmed_kill(name, confirmed))
            return
        self.enforce(action, name)

    def _confirmed_kill(self, name: str, confirmed: bool | None) -> None:
        if confirmed:
            self.enforce("kill", name)
        else:
            self.notify(f"{name}: not killed")

    @work(thread=True, group="enforce")
    def enforce(self, action: str, name: str) -> None:
        """Run the action off the UI thread (the kernel may take a while); report back on it."""
        try:
            state = run_action(self.feed.ledger, action, name, self.actor)
        except ACTION_ERRORS as exc:
            self.call_from_thread(self._enforced, f"{action} {name} failed: {exc}", "error")
        else:
            self.call_from_thread(self._enforced, f"{name}: {state}", "information")

    def _enforced(self, message: str, severity: str) -> None:
        self.feed.invalidate()  # our own writes do not move data_version for our connection
        self.refresh_now()
        self.notify(message, severity=severity)  # type: ignore[arg-type]

    def action_budget(self) -> None:
        name = self.table.selected
        row = next((r for r in self.rows if r.name == name), None)
        initial = BudgetForm(
            scope=f"bottle:{name}" if name else "global",
            provider=row.providers[0] if row and row.providers else "*",
            limit="",
        )
        self.push_screen(BudgetScreen(initial, self.submit_budget))

    def submit_budget(self, form: BudgetForm) -> str | None:
        """Validate and save a budget; return the error to show in the form, or None."""
        try:
            budget = budget_from_form(form, self.known_providers)
            save_budget(self.feed.ledger, budget, self.known_providers, self.actor)
        except (ValueError, LedgerError) as exc:
            return str(exc)
        self.feed.invalidate()
        self.refresh_now()
        self.notify(f"budget set: {budget.scope} {budget.provider} {form.limit.strip()} {budget.unit}")
        return None

    def action_help(self) -> None:
        self.push_screen(HelpScreen())
