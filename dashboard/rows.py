"""The bottle table's rows, from ledger data (pure): governing pool, burn rate, projection,
sorting and filtering.

A bottle's *governing* pool is the pool nearest to stopping it: of the pools that limit it (the
scopes on its path, and its agents' pools) and that count the providers it uses, the one with the
largest share of its limit spent or held. Its projection comes from
:func:`analytics.budgets.pool_burn`, over the usage of every bottle that draws from that pool.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from analytics.budgets import Burn, PoolBurn, pool_burn, scopes_of_call
from bbnet.model import Bottle, DesiredState, PoolView
from dashboard.tally import BottleUsage

STATE_LABELS = {"open": "open", "cutoff": "cut off", "frozen": "frozen", "killed": "killed"}


@dataclass(frozen=True)
class BottleRow:
    name: str
    parent: str | None
    state: str  # open | cutoff | frozen | killed
    reason: str
    providers: tuple[str, ...]
    tokens: int
    micros: int
    calls: int
    pool: PoolView | None  # the governing pool
    spent: float | None  # (used + reserved) / limit of the governing pool
    burn: PoolBurn | None  # the governing pool's burn and projection
    tokens_per_hour: float  # this bottle's own burn
    last_call: float | None


def spent_share(pool: PoolView) -> float:
    """The share of a pool's limit used or held; a zero limit counts as spent."""
    if pool.limit <= 0:
        return 1.0
    return (pool.used + pool.reserved) / pool.limit


def index_pools(pools: Iterable[PoolView]) -> dict[str, list[PoolView]]:
    """Pools by scope; agent pools also under :func:`_agents_key` of their bottle, so each bottle
    finds its limiting pools with a few lookups instead of a scan."""
    index: dict[str, list[PoolView]] = defaultdict(list)
    for p in pools:
        index[p.scope].append(p)
        if p.scope.startswith("agent:"):
            index[_agents_key(p.scope.removeprefix("agent:").split("/", 1)[0])].append(p)
    return index


def _agents_key(bottle: str) -> str:
    return f"agents-of:{bottle}"


def limiting_pools(
    bottle: str, index: Mapping[str, list[PoolView]], parents: Mapping[str, str | None]
) -> list[PoolView]:
    """The pools that limit ``bottle``, root first: global, its ancestors, itself, then its agents."""
    scopes = [*scopes_of_call(bottle, "", parents), _agents_key(bottle)]
    return [p for scope in scopes for p in index.get(scope, ())]


def governing_pool(bottle: str, providers: Sequence[str], limiting: Sequence[PoolView]) -> PoolView | None:
    """Of the pools limiting ``bottle`` (root first) that count the providers it uses, the one
    nearest to stopping it; the deeper one wins a tie. None when no budget applies."""
    candidates = [
        (spent_share(p), depth, p)
        for depth, p in enumerate(limiting)
        if p.provider == "*" or not providers or p.provider in providers
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def burns_by_scope(burns: Iterable[Burn], parents: Mapping[str, str | None]) -> dict[str, list[Burn]]:
    """Each scope's share of the burns: the calls on whose path it lies."""
    index: dict[str, list[Burn]] = defaultdict(list)
    for b in burns:
        for scope in scopes_of_call(b.bottle, b.agent, parents):
            index[scope].append(b)
    return index


def tokens_per_hour(burns: Iterable[Burn]) -> dict[str, float]:
    """Per bottle: tokens per hour over the last hour, else the 24-hour average (as pool_burn does)."""
    hour: dict[str, int] = defaultdict(int)
    day: dict[str, int] = defaultdict(int)
    for b in burns:
        hour[b.bottle] += b.tokens_1h
        day[b.bottle] += b.tokens_24h
    return {name: float(hour[name]) if hour[name] > 0 else day[name] / 24 for name in day}


def build_rows(
    bottles: Sequence[Bottle],
    states: Mapping[str, DesiredState],
    pools: Sequence[PoolView],
    usage: Callable[[str], BottleUsage | None],
    burns: Sequence[Burn],
    now: float,
) -> list[BottleRow]:
    """One row per live bottle, in name order."""
    parents = {b.name: b.parent for b in bottles}
    index = index_pools(pools)
    by_scope = burns_by_scope(burns, parents)
    rates = tokens_per_hour(burns)
    projections: dict[tuple[str, str, str], PoolBurn] = {}
    rows = []
    for b in bottles:
        used = usage(b.name)
        providers = used.providers if used else ()
        pool = governing_pool(b.name, providers, limiting_pools(b.name, index, parents))
        projection = None
        if pool is not None:
            key = (pool.scope, pool.provider, pool.unit)
            if key not in projections:
                projections[key] = pool_burn(
                    pool.scope, pool.provider, pool.unit, pool.period, pool.limit, pool.used,
                    pool.reserved, by_scope.get(pool.scope, ()), parents, now,
                )  # fmt: skip
            projection = projections[key]
        state = states.get(b.name)
        rows.append(
            BottleRow(
                name=b.name,
                parent=b.parent,
                state=state.state if state else "open",
                reason=state.reason if state else "",
                providers=providers,
                tokens=used.tokens if used else 0,
                micros=used.micros if used else 0,
                calls=used.calls if used else 0,
                pool=pool,
                spent=spent_share(pool) if pool else None,
                burn=projection,
                tokens_per_hour=rates.get(b.name, 0.0),
                last_call=used.last_call if used else None,
            )
        )
    return rows


# -- sorting and filtering --------------------------------------------------------------------

_MISSING_LAST = float("-inf")

SORT_KEYS: dict[str, Callable[[BottleRow], tuple[float | str, str]]] = {
    "name": lambda r: (r.name, r.name),
    "state": lambda r: (r.state, r.name),
    "tokens": lambda r: (r.tokens, r.name),
    "usd": lambda r: (r.micros, r.name),
    "spent": lambda r: (r.spent if r.spent is not None else _MISSING_LAST, r.name),
    "burn": lambda r: (r.tokens_per_hour, r.name),
    # soonest exhaustion first when descending: negate, and put "never" last
    "eta": lambda r: (
        -r.burn.exhausts_at if r.burn and r.burn.exhausts_at is not None else _MISSING_LAST,
        r.name,
    ),
    "last": lambda r: (r.last_call if r.last_call is not None else _MISSING_LAST, r.name),
}
SORT_ORDER = tuple(SORT_KEYS)
DESCENDING_BY_DEFAULT = frozenset({"tokens", "usd", "spent", "burn", "eta", "last"})


def sort_rows(rows: Iterable[BottleRow], key: str, descending: bool) -> list[BottleRow]:
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}: expected one of {', '.join(SORT_ORDER)}")
    return sorted(rows, key=SORT_KEYS[key], reverse=descending)


def matches(row: BottleRow, text: str) -> bool:
    """Whether every word of ``text`` appears in the row's name, state, parent or providers.

    A word may also be ``state:X`` (exact state, ``cut`` matching ``cut off``) or ``parent:X``.
    """
    haystack = " ".join((row.name, STATE_LABELS[row.state], row.state, row.parent or "", *row.providers))
    for word in text.lower().split():
        field, sep, value = word.partition(":")
        if sep and field == "state":
            if not (row.state.startswith(value) or STATE_LABELS[row.state].startswith(value)):
                return False
        elif sep and field == "parent":
            if row.parent != value:
                return False
        elif word not in haystack:
            return False
    return True


def filter_rows(rows: Iterable[BottleRow], text: str) -> list[BottleRow]:
    return [r for r in rows if matches(r, text)] if text.strip() else list(rows)
