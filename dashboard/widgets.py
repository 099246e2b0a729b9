"""The main screen's widgets: the bottle table, the detail pane and the action feed.

The table is updated in place: only cells whose text or style changed are rewritten, and the rows
are rebuilt only when their order changes (a new sort, a bottle added or removed). Cells are plain
``(text, style)`` pairs so that comparing them is exact and cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import DataTable, RichLog, Static

from bbnet.model import Action
from dashboard import fmt
from dashboard.feed import Detail
from dashboard.rows import STATE_LABELS, BottleRow, spent_share


class Column(NamedTuple):
    key: str  # a sort key of dashboard.rows, or "providers" (not sortable)
    label: str
    width: int | None  # None: as wide as the widest cell
    justify: str = "left"


COLUMNS = (
    Column("name", "bottle", None),
    Column("state", "state", 7),
    Column("spent", "budget", 10),
    Column("tokens", "tokens", 6, "right"),
    Column("usd", "USD", 7, "right"),
    Column("burn", "burn/h", 6, "right"),
    Column("eta", "ETA", 4, "right"),
    Column("last", "last", 4, "right"),
    Column("providers", "providers", None),
)
BAR_WIDTH = 5

STATE_STYLES = {"open": "green", "cutoff": "bold red", "frozen": "bold cyan", "killed": "dim"}

Cell = tuple[str, str]  # text, style


def spent_style(share: float) -> str:
    return "red" if share >= 1 else "yellow" if share >= 0.8 else "green"


def row_cells(row: BottleRow, now: float) -> tuple[Cell, ...]:
    """The table cells of one row, in :data:`COLUMNS` order."""
    if row.spent is None:
        budget: Cell = ("-", "dim")
    else:
        budget = (f"{fmt.bar(row.spent, BAR_WIDTH)} {fmt.percent(row.spent):>4}", spent_style(row.spent))
    eta = fmt.eta(row.burn, now)
    soon = row.burn is not None and (
        eta == "now" or (row.burn.exhausts_at is not None and row.burn.exhausts_at - now < 3600)
    )
    return (
        (row.name, ""),
        (STATE_LABELS[row.state], STATE_STYLES[row.state]),
        budget,
        (fmt.tokens(row.tokens), ""),
        (fmt.usd(row.micros), ""),
        (fmt.tokens(row.tokens_per_hour) if row.tokens_per_hour else "-", ""),
        (eta, "bold red" if soon else ""),
        (fmt.ago(row.last_call, now), ""),
        (",".join(row.providers) or "-", "dim" if not row.providers else ""),
    )


def _text(cell: Cell, column: Column) -> Text:
    return Text(cell[0], style=cell[1], justify=column.justify, no_wrap=True)  # type: ignore[arg-type]


class BottleTable(DataTable[Text]):
    """One row per bottle, keyed by bottle name."""

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id="bottles")
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column.label, key=column.key, width=column.width)

    @property
    def selected(self) -> str | None:
        """The bottle under the cursor."""
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def show(self, rows: Sequence[BottleRow], now: float) -> None:
        wanted = [(r.name, row_cells(r, now)) for r in rows]
        order = [name for name, _ in wanted]
        if order != self._order:
            self._rebuild(wanted)
            return
        for name, cells in wanted:
            before = self._shown[name]
            for column, cell, old in zip(COLUMNS, cells, before, strict=True):
                if cell != old:
                    self.update_cell(name, column.key, _text(cell, column))
            self._shown[name] = cells

    def _rebuild(self, wanted: list[tuple[str, tuple[Cell, ...]]]) -> None:
        """Replace every row, keeping the cursor on the same bottle where it is still shown."""
        keep = self.selected
        self.clear()
        for name, cells in wanted:
            self.add_row(*(_text(c, col) for c, col in zip(cells, COLUMNS, strict=True)), key=name)
        self._shown = dict(wanted)
        self._order = [name for name, _ in wanted]
        if keep in self._shown:
            self.move_cursor(row=self._order.index(keep))


def _state_text(state: str) -> Text:
    return Text(STATE_LABELS[state], style=STATE_STYLES[state])


def detail_text(detail: Detail, now: float) -> Text:
    """The detail pane: the bottle, its pools root first, its latest calls, its enforcement history."""
    b, state = detail.bottle, detail.state
    out = Text()
    out.append(b.name, style="bold")
    out.append(" ")
    out.append_text(_state_text(state.state))
    if state.state != "open" and (state.reason or state.actor):
        out.append(f" {state.reason} ({state.actor})", style="dim")
    out.append(f"\npolicy {b.policy} · parent {b.parent or '-'} · {b.veth or 'no veth'} ")
    out.append(" ".join(b.addresses) or "no address")
    if detail.usage is not None:
        u = detail.usage
        unpriced = f" (+{u.unpriced} unpriced)" if u.unpriced else ""  # USD undercounts those calls
        out.append(
            f"\n{u.calls} calls · {fmt.tokens(u.tokens)} tokens · {fmt.usd(u.micros)}{unpriced} · last"
            f" {fmt.ago(u.last_call, now)} ago · {', '.join(u.providers)}"
        )
    out.append("\npools, root first\n", style="bold underline")
    if not detail.pools:
        out.append("  no budget applies\n", style="dim")
    for pool in detail.pools:
        share = spent_share(pool)
        out.append(f"  {fmt.pool_label(pool)} ")
        out.append(fmt.bar(share, 8), style=spent_style(share))
        out.append(f" {fmt.amount(pool.unit, pool.used)}/{fmt.amount(pool.unit, pool.limit)}")
        out.append(f" +{fmt.amount(pool.unit, pool.reserved)} held\n" if pool.reserved else "\n")
    out.append("\nrecent calls\n", style="bold underline")
    calls = detail.usage.recent if detail.usage else ()
    if not calls:
        out.append("  none yet\n", style="dim")
    for call in reversed(calls):
        cost = "unpriced" if call.cost_micros is None else fmt.usd(call.cost_micros)
        estimate = " est." if call.estimated else ""
        out.append(
            f"  {fmt.clock(call.ts)} {call.provider} {call.model or '?'} {fmt.tokens(call.tokens)} tok"
            f"{estimate} {cost} {'lost' if call.lost else call.status or '-'} ({call.agent})\n"
        )
    out.append("\nenforcement history\n", style="bold underline")
    if not detail.history:
        out.append("  none\n", style="dim")
    for action in reversed(detail.history):
        out.append("  ")
        out.append_text(action_line(action, with_bottle=False))
        out.append("\n")
    return out


def action_line(action: Action, *, with_bottle: bool = True) -> Text:
    """``12:03:05 ta cutoff controller ok budget exhausted``; failures in red."""
    ok = action.result == "ok"
    line = Text(f"{fmt.clock(action.ts)} ", style="" if ok else "red")
    if with_bottle:
        line.append(f"{action.bottle or '-'} ", style="bold")
    line.append(f"{action.action} ", style="bold" if ok else "bold red")
    line.append(action.actor)
    if not ok:
        line.append(f" {action.result}", style="red")
    if action.reason:
        line.append(f" · {action.reason}", style="dim")
    return line


class DetailPane(VerticalScroll):
    def compose(self) -> Iterable[Static]:
        yield Static("select a bottle", id="detail-text")

    def show(self, detail: Detail | None, now: float) -> None:
        body = self.query_one("#detail-text", Static)
        body.update(detail_text(detail, now) if detail else Text("no bottle selected", style="dim"))


class ActionFeed(RichLog):
    """Enforcement actions as they happen, newest at the bottom."""

    def __init__(self, max_lines: int) -> None:
        super().__init__(max_lines=max_lines, min_width=20, wrap=True, auto_scroll=True, id="feed")
        self.border_title = "actions"

    def add(self, actions: Iterable[Action]) -> None:
        for action in actions:
            self.write(action_line(action))
