"""The dashboard's dialogs: kill confirmation, the budget form, help."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from bbnet.model import PERIODS, UNITS
from dashboard.ops import BudgetForm

# not scoped: these rules style the screens themselves, and are shared by all three
DIALOG_CSS = """
ConfirmKill, BudgetScreen, HelpScreen { align: center middle; }
.dialog { width: 64; max-width: 100%; height: auto; max-height: 100%; border: thick $error;
          background: $surface; padding: 0 1; }
.dialog Label { width: 100%; }
.buttons { height: auto; align-horizontal: right; margin-top: 1; }
.buttons Button { margin-left: 1; }
"""


class ConfirmKill(ModalScreen[bool]):
    """Kill is the one action that cannot be undone: ask first. Cancel has the focus, so a stray
    Enter does nothing; ``y`` confirms, ``n`` or Escape cancels."""

    DEFAULT_CSS = DIALOG_CSS
    SCOPED_CSS = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "kill"),
        Binding("n,escape", "answer(False)", "cancel"),
    ]

    def __init__(self, bottle: str) -> None:
        super().__init__()
        self.bottle = bottle

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-kill"):
            yield Label(f"[b]Kill bottle {self.bottle}?[/b]")
            yield Label(
                "Every process in it is killed, and the veth and netns bbnet made are removed. "
                "This cannot be undone."
            )
            with Horizontal(classes="buttons"):
                yield Button("Kill (y)", variant="error", id="kill")
                yield Button("Cancel (n)", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "kill")

    def action_answer(self, kill: bool) -> None:
        self.dismiss(kill)


class BudgetScreen(ModalScreen[bool]):
    """Set a budget. ``submit`` validates and saves it and returns an error message (shown here,
    the form stays open) or None (the form closes)."""

    DEFAULT_CSS = (
        DIALOG_CSS
        + """
    #budget-form { border: thick $primary; }
    #fields { grid-size: 2; grid-columns: 10 1fr; grid-rows: 1; grid-gutter: 1 0; height: auto;
              margin-top: 1; }
    #budget-error { color: $error; height: auto; margin-top: 1; }
    """
    )
    SCOPED_CSS = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, initial: BudgetForm, submit: Callable[[BudgetForm], str | None]) -> None:
        super().__init__()
        self.initial = initial
        self.submit = submit

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="budget-form"):
            yield Label("[b]Set a budget[/b]  (a call must fit every pool on its path)")
            with Grid(id="fields"):
                yield Label("scope")
                yield Input(
                    self.initial.scope, placeholder="global, bottle:NAME, agent:B/A", id="scope", compact=True
                )
                yield Label("provider")
                yield Input(
                    self.initial.provider,
                    placeholder="anthropic, openai, ... or *",
                    id="provider",
                    compact=True,
                )
                yield Label("limit")
                yield Input(
                    self.initial.limit, placeholder="500k tokens, or 20 for $20", id="limit", compact=True
                )
                yield Label("unit")
                yield Select(
                    [(u, u) for u in UNITS],
                    value=self.initial.unit,
                    allow_blank=False,
                    id="unit",
                    compact=True,
                )
                yield Label("period")
                yield Select(
                    [(p, p) for p in PERIODS],
                    value=self.initial.period,
                    allow_blank=False,
                    id="period",
                    compact=True,
                )
            yield Static("", id="budget-error")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#limit", Input).focus()

    def form(self) -> BudgetForm:
        return BudgetForm(
            scope=self.query_one("#scope", Input).value,
            provider=self.query_one("#provider", Input).value,
            limit=self.query_one("#limit", Input).value,
            unit=str(self.query_one("#unit", Select).value),
            period=str(self.query_one("#period", Select).value),
        )

    def _save(self) -> None:
        error = self.submit(self.form())
        if error is None:
            self.dismiss(True)
        else:
            self.query_one("#budget-error", Static).update(error)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)


HELP = """\
[b]bbnet dashboard[/b]: every bottle's spend against its budget, live.

[b]c[/b] cut off     the bottle's veth joins the kernel's cutoff set
[b]r[/b] restore     undo cutoff and freeze
[b]f[/b] freeze      cut off, then freeze its processes (cgroup)
[b]t[/b] thaw        resume its processes; the network stays cut
[b]k[/b] kill        cut off, kill its processes, remove what bbnet made
[b]b[/b] budget      set a budget (the selected bottle's, or any scope)
[b]/[/b] filter      words match name, state, parent, provider;
              state:cut, parent:NAME; Escape clears it
[b]s[/b] sort        next column (or click a header); [b]o[/b] reverses
[b]q[/b] quit

budget = the governing pool (the one nearest to stopping the bottle),
ETA = when it runs out at the current burn (last hour, else 24 h).
Actions are audited with you as actor, like `bbnet cutoff`."""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = (
        DIALOG_CSS
        + """
    #help { width: 76; border: thick $primary; }
    """
    )
    SCOPED_CSS = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help"):
            yield Static(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
