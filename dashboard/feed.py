"""The dashboard's view of the ledger, kept current without rereading it.

Each poll first asks SQLite whether any other connection committed since the last poll
(``PRAGMA data_version``). If not, nothing is read. If so, new usage and action rows are tailed
by id (only rows never seen before), and the small tables (bottles, desired states, pools) are
reread. The first poll does not tail usage from the first row: it seeds the tally from indexed
aggregates (:meth:`dashboard.tally.Tally.seeded`), so start-up does not read every row ever
committed. The dashboard's own writes (an operator action, a budget) do not move ``data_version``
for its own connection, so it calls :meth:`LedgerFeed.invalidate` after each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bbnet.ledger import Ledger
from bbnet.model import Action, Bottle, DesiredState, PoolView
from dashboard.rows import BottleRow, build_rows, index_pools, limiting_pools
from dashboard.tally import DAY, RECENT_CALLS, BottleUsage, Tally, call_from_row

PAGE = 5000  # rows per tail query
FEED_ACTIONS = 200  # actions kept for the feed
HISTORY_ACTIONS = 20  # actions kept per bottle for the detail pane
POOL_REREAD_SECONDS = 60.0  # pools are reread at least this often: a new period starts new pools


@dataclass(frozen=True)
class Poll:
    changed: bool  # anything new since the previous poll
    new_actions: tuple[Action, ...]
    touched: frozenset[str]  # bottles with new usage or actions


@dataclass(frozen=True)
class Detail:
    """What the detail pane shows for one bottle."""

    bottle: Bottle
    state: DesiredState
    pools: tuple[PoolView, ...]  # root first
    usage: BottleUsage | None
    history: tuple[Action, ...]  # oldest first


class LedgerFeed:
    def __init__(self, ledger: Ledger, clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.clock = clock
        self.tally = Tally()
        self.bottles: list[Bottle] = []
        self.states: dict[str, DesiredState] = {}
        self.pools: list[PoolView] = []
        self.recent_actions: deque[Action] = deque(maxlen=FEED_ACTIONS)
        self._history: dict[str, deque[Action]] = {}
        self._last_action_id = 0
        self._version: int | None = None
        self._pools_read_at = float("-inf")
        self._stale = True
        self._seeded = False

    def invalidate(self) -> None:
        """Reread everything on the next poll (after this process wrote to the ledger itself)."""
        self._stale = True

    def poll(self) -> Poll:
        now = self.clock()
        version = self.ledger.data_version()  # read first: a commit after this shows next time
        if not self._stale and version == self._version:
            if now - self._pools_read_at >= POOL_REREAD_SECONDS:
                self._read_tables(now)
                return Poll(True, (), frozenset())
            return Poll(False, (), frozenset())
        self._version, self._stale = version, False
        touched = set() if self._seeded else self._seed_usage(now)
        touched |= self._tail_usage(now)
        actions = self._tail_actions()
        touched |= {a.bottle for a in actions if a.bottle is not None}
        self._read_tables(now)
        return Poll(True, tuple(actions), frozenset(touched))

    def rows(self) -> list[BottleRow]:
        now = self.clock()
        return build_rows(self.bottles, self.states, self.pools, self.tally.usage, self.tally.burns(now), now)

    def detail(self, name: str) -> Detail | None:
        bottle = next((b for b in self.bottles if b.name == name), None)
        if bottle is None:
            return None
        parents = {b.name: b.parent for b in self.bottles}
        return Detail(
            bottle=bottle,
            state=self.states.get(name, DesiredState(name, "open")),
            pools=tuple(limiting_pools(name, index_pools(self.pools), parents)),
            usage=self.tally.usage(name),
            history=tuple(self._history.get(name, ())),
        )

    def _seed_usage(self, now: float) -> set[str]:
        """Fill the tally with every usage row so far, read as aggregates; return the bottles seen."""
        upto = self.ledger.last_usage_id()  # first: rows committed after it are tailed next
        totals = self.ledger.usage_summary(upto)
        bottles = sorted({t.bottle for t in totals})
        last_day = [call_from_row(r) for r in self.ledger.usage_since(now - DAY, upto)]
        latest = [
            call_from_row(r) for name in bottles for r in self.ledger.latest_usage(name, upto, RECENT_CALLS)
        ]
        self.tally = Tally.seeded(upto, totals, last_day, latest, now)
        self._seeded = True
        return set(bottles)

    def _tail_usage(self, now: float) -> set[str]:
        touched: set[str] = set()
        while True:
            page = self.ledger.usage(since_id=self.tally.last_id, limit=PAGE)
            touched |= self.tally.add((call_from_row(r) for r in page), now)
            if len(page) < PAGE:
                return touched

    def _tail_actions(self) -> list[Action]:
        new: list[Action] = []
        while True:
            page = self.ledger.actions(since_id=self._last_action_id, limit=PAGE)
            for action in page:
                self._last_action_id = action.id
                self.recent_actions.append(action)
                if action.bottle is not None:
                    self._history.setdefault(action.bottle, deque(maxlen=HISTORY_ACTIONS)).append(action)
            new.extend(page)
            if len(page) < PAGE:
                # at start-up only the feed's worth is news; older rows only fill the histories
                return new[-FEED_ACTIONS:]

    def _read_tables(self, now: float) -> None:
        self.bottles = self.ledger.bottles()
        self.states = {s.bottle: s for s in self.ledger.desired_states()}
        self.pools = self.ledger.pools(now)
        self._pools_read_at = now
