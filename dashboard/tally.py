"""Usage folded into what the dashboard shows: per-bottle totals, recent calls, burn windows.

The dashboard tails the ``usage`` table by id and folds each new row in here once, so a refresh
never rescans usage. Burn rates keep running sums over the last hour and the last 24 hours: adding
a call and letting one age out are O(1), whatever the size of the ledger.

At start-up the tally is not folded from every row (a cost that grows with every call ever made) but
:meth:`Tally.seeded` from what the ledger sums with its indexes: totals per (bottle, provider), the
calls of the last day, and each bottle's latest calls. That gives exactly what the fold would.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analytics.budgets import Burn
from bbnet.audit import UsageTotals

HOUR = 3600.0
DAY = 24 * HOUR
RECENT_CALLS = 20  # per bottle, for the detail pane


@dataclass(frozen=True)
class Call:
    """One metered call, as the dashboard needs it."""

    id: int
    ts: float
    bottle: str
    agent: str
    provider: str
    model: str | None
    tokens: int
    cost_micros: int | None  # None: unpriced model
    status: int | None
    estimated: bool
    lost: bool = False  # its meter died mid-call: billed from the reservation


def call_from_row(row: Mapping[str, Any]) -> Call:
    """A ``Ledger.usage()`` row as a :class:`Call`."""
    return Call(
        id=row["id"],
        ts=row["ts"],
        bottle=row["bottle"],
        agent=row["agent"],
        provider=row["provider"],
        model=row["model"],
        tokens=row["input_tokens"] + row["output_tokens"],
        cost_micros=row["cost_micros"],
        status=row["status"],
        estimated=bool(row["estimated"]),
        lost=bool(row["lost"]),
    )


@dataclass(frozen=True)
class BottleUsage:
    """A bottle's usage over the whole ledger, plus its latest calls (newest last)."""

    tokens: int
    micros: int
    calls: int
    unpriced: int  # calls without a price: not in ``micros``
    providers: tuple[str, ...]  # by tokens, most first
    last_call: float | None
    recent: tuple[Call, ...]


@dataclass
class _Totals:
    tokens: int = 0
    micros: int = 0
    calls: int = 0
    unpriced: int = 0
    last_call: float | None = None
    by_provider: dict[str, int] = field(default_factory=dict)
    recent: deque[Call] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))


_Key = tuple[str, str, str]  # (bottle, agent, provider)


class _Window:
    """Running token and micro-USD sums per (bottle, agent, provider) over a trailing span."""

    def __init__(self, span: float) -> None:
        self.span = span
        self.calls: deque[Call] = deque()
        self.tokens: dict[_Key, int] = defaultdict(int)
        self.micros: dict[_Key, int] = defaultdict(int)

    def add(self, call: Call, now: float) -> None:
        if call.ts <= now - self.span:
            return
        self.calls.append(call)
        key = (call.bottle, call.agent, call.provider)
        self.tokens[key] += call.tokens
        self.micros[key] += call.cost_micros or 0

    def expire(self, now: float) -> None:
        """Drop calls older than the span (calls arrive in commit order, so oldest first)."""
        cutoff = now - self.span
        while self.calls and self.calls[0].ts <= cutoff:
            call = self.calls.popleft()
            key = (call.bottle, call.agent, call.provider)
            self.tokens[key] -= call.tokens
            self.micros[key] -= call.cost_micros or 0
            if self.tokens[key] == 0 and self.micros[key] == 0:
                del self.tokens[key], self.micros[key]


class Tally:
    """Everything the dashboard knows about usage, folded from rows in id order."""

    def __init__(self) -> None:
        self.last_id = 0
        self._totals: dict[str, _Totals] = {}
        self._hour = _Window(HOUR)
        self._day = _Window(DAY)

    @classmethod
    def seeded(
        cls,
        upto_id: int,
        totals: Iterable[UsageTotals],
        last_day: Iterable[Call],
        latest: Iterable[Call],
        now: float,
    ) -> Tally:
        """The tally that folding every usage row with ``id <= upto_id`` at ``now`` would give.

        ``totals``: the rows summed per (bottle, provider); ``last_day``: every call with
        ``ts > now - DAY``, in id order (the burn windows keep them to age them out); ``latest``:
        each bottle's last :data:`RECENT_CALLS` calls, in id order.
        """
        tally = cls()
        tally.last_id = upto_id
        for row in totals:
            t = tally._totals.setdefault(row.bottle, _Totals())
            t.tokens += row.tokens
            t.micros += row.micros
            t.calls += row.calls
            t.unpriced += row.unpriced
            t.last_call = row.last_ts if t.last_call is None else max(t.last_call, row.last_ts)
            t.by_provider[row.provider] = row.tokens
        for call in latest:
            tally._totals[call.bottle].recent.append(call)
        for call in last_day:
            tally._hour.add(call, now)
            tally._day.add(call, now)
        return tally

    def add(self, calls: Iterable[Call], now: float) -> set[str]:
        """Fold in new calls; return the bottles they touched."""
        touched: set[str] = set()
        for call in calls:
            if call.id <= self.last_id:
                continue  # already counted
            self.last_id = call.id
            t = self._totals.setdefault(call.bottle, _Totals())
            t.tokens += call.tokens
            t.micros += call.cost_micros or 0
            t.calls += 1
            t.unpriced += int(call.cost_micros is None)
            t.last_call = call.ts if t.last_call is None else max(t.last_call, call.ts)
            t.by_provider[call.provider] = t.by_provider.get(call.provider, 0) + call.tokens
            t.recent.append(call)
            self._hour.add(call, now)
            self._day.add(call, now)
            touched.add(call.bottle)
        return touched

    def usage(self, bottle: str) -> BottleUsage | None:
        t = self._totals.get(bottle)
        if t is None:
            return None
        providers = tuple(sorted(t.by_provider, key=lambda p: (-t.by_provider[p], p)))
        return BottleUsage(t.tokens, t.micros, t.calls, t.unpriced, providers, t.last_call, tuple(t.recent))

    def burns(self, now: float) -> list[Burn]:
        """Usage over the last hour and day per (bottle, agent, provider), as the budget helpers take it."""
        self._hour.expire(now)
        self._day.expire(now)
        return [
            Burn(
                bottle=key[0],
                agent=key[1],
                provider=key[2],
                tokens_1h=self._hour.tokens.get(key, 0),
                tokens_24h=tokens,
                micros_1h=self._hour.micros.get(key, 0),
                micros_24h=self._day.micros[key],
            )
            for key, tokens in self._day.tokens.items()
        ]
