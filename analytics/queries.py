"""Report SQL, built as text from validated parameters only; every user value travels as a parameter.

``--by`` keys come from a fixed list and map to fixed expressions, so nothing a user types is ever
spliced into a query. Times are epoch seconds (UTC); hour and day buckets are the bucket's start.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analytics.errors import ReportError

LEDGER = "ledger"  # the catalog name the ledger is attached as: ledger.usage, ledger.pools, ...
BY_KEYS = ("bottle", "agent", "provider", "model", "node", "hour", "day")  # node: the host that metered
BUCKET_SECONDS = {"hour": 3600, "day": 86400}

TOKENS = "input_tokens + output_tokens"  # input includes cache reads/writes, output reasoning
# calls whose meter died mid-call, billed from their reservation's estimate (bbnet/budgets.py)
LOST_CALLS = "count(*) FILTER (WHERE lost <> 0)"
USAGE_MEASURES: tuple[tuple[str, str], ...] = (
    ("calls", "count(*)"),
    ("input_tokens", "sum(input_tokens)::BIGINT"),
    ("cache_write_tokens", "sum(cache_write_tokens)::BIGINT"),
    ("cache_read_tokens", "sum(cache_read_tokens)::BIGINT"),
    ("output_tokens", "sum(output_tokens)::BIGINT"),
    ("reasoning_tokens", "sum(reasoning_tokens)::BIGINT"),
    ("tokens", f"sum({TOKENS})::BIGINT"),
    ("estimated_calls", "count(*) FILTER (WHERE estimated <> 0)"),
    ("lost_calls", LOST_CALLS),
)
# Token sums are cast back to BIGINT: DuckDB sums BIGINT as HUGEINT, which is slower to hand to
# Python (a report can have ~1M groups). sum() skips NULL: unpriced calls add nothing to cost_usd (NULL when a group has no priced call)
# and are counted apart, so they are never passed off as $0.
COST_MEASURES: tuple[tuple[str, str], ...] = (
    ("calls", "count(*)"),
    ("tokens", f"sum({TOKENS})::BIGINT"),
    ("cost_usd", "sum(cost_usd)"),
    ("unpriced_calls", "count(*) FILTER (WHERE cost_usd IS NULL)"),
    ("lost_calls", LOST_CALLS),
)


@dataclass(frozen=True)
class Query:
    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Filters:
    since: float | None = None  # inclusive, epoch seconds
    until: float | None = None  # exclusive
    bottle: str | None = None  # a validated bottle name


def parse_by(text: str) -> tuple[str, ...]:
    """``bottle,model,day`` → ("bottle", "model", "day"), each checked against :data:`BY_KEYS`."""
    keys = tuple(part.strip() for part in text.split(","))
    for key in keys:
        if key not in BY_KEYS:
            raise ReportError(f"invalid --by {text!r}: {key!r} is not one of {', '.join(BY_KEYS)}")
    if len(set(keys)) != len(keys):
        raise ReportError(f"invalid --by {text!r}: a key is repeated")
    if "hour" in keys and "day" in keys:
        raise ReportError(f"invalid --by {text!r}: use hour or day, not both")
    return keys


BUCKET_COLUMNS = {"hour": "hour_start", "day": "day_start"}
# every source of calls carries each call's hour and day bucket, computed once when the call is read
BUCKETS = ", ".join(
    f"CAST(floor(ts / {BUCKET_SECONDS[key]}) AS BIGINT) * {BUCKET_SECONDS[key]} AS {column}"
    for key, column in BUCKET_COLUMNS.items()
)


def key_expr(key: str) -> str:
    if key in BUCKET_COLUMNS:
        return BUCKET_COLUMNS[key]
    if key not in BY_KEYS:
        raise ReportError(f"unknown grouping key {key!r}")
    return key


BUCKET_LABELS = {"hour": "%Y-%m-%dT%H:00Z", "day": "%Y-%m-%d"}  # as table.bucket_label, UTC


def label_expr(key: str) -> str:
    """A grouping key as shown: buckets become ISO text in SQL, after aggregating (not per row in Python)."""
    if key in BUCKET_COLUMNS:
        return f"strftime(make_timestamp({BUCKET_COLUMNS[key]} * 1000000), '{BUCKET_LABELS[key]}')"
    return key_expr(key)


def where(filters: Filters, *extra: str) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = list(extra)
    params: list[Any] = []
    if filters.since is not None:
        clauses.append("ts >= ?")
        params.append(filters.since)
    if filters.until is not None:
        clauses.append("ts < ?")
        params.append(filters.until)
    if filters.bottle is not None:
        clauses.append("bottle = ?")
        params.append(filters.bottle)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


@dataclass(frozen=True)
class Source:
    """The calls a usage or cost report reads: a relation and the filters to apply to it."""

    relation: str
    filters: Filters = Filters()

    def select(self, *extra: str) -> tuple[str, tuple[Any, ...]]:
        """``FROM relation WHERE ...`` and its parameters."""
        clause, params = where(self.filters, *extra)
        return f" FROM {self.relation}{clause}", params


CALLS = "calls"  # the temp table a report snapshots its calls into when it scans the ledger
SNAPSHOT = Source(CALLS)
# the columns each report copies: the fewer, the faster the SQLite scan
_KEY_COLUMNS = "ts, bottle, agent, provider, model, node, input_tokens, output_tokens, lost"
USAGE_COLUMNS = f"{_KEY_COLUMNS}, cache_write_tokens, cache_read_tokens, reasoning_tokens, estimated"
COST_COLUMNS = f"{_KEY_COLUMNS}, cost_usd"


def snapshot(filters: Filters, columns: str) -> Query:
    """Copy the calls in the window out of the ledger into DuckDB once (when there is no cache).

    Every section of a report (groups, unpriced models, chart) then reads the same rows, even while
    the meter keeps committing, and the SQLite file is scanned once instead of once per section.
    """
    if columns not in (USAGE_COLUMNS, COST_COLUMNS):
        raise ReportError("snapshot columns must be USAGE_COLUMNS or COST_COLUMNS")
    clause, params = where(filters)
    return Query(
        f"CREATE OR REPLACE TEMP TABLE {CALLS} AS SELECT {columns}, {BUCKETS} FROM {LEDGER}.usage{clause}",
        params,
    )


def aggregate(
    by: Sequence[str],
    measures: Sequence[tuple[str, str]],
    source: Source = SNAPSHOT,
    top: int | None = None,
    rank_by: str = "calls",
) -> Query:
    """Calls grouped by ``by``; with ``top``, only the ``top`` groups largest in ``rank_by``."""
    names = [name for name, _ in measures]
    if rank_by not in names:
        raise ReportError(f"cannot rank by {rank_by!r}: not one of {', '.join(names)}")
    keys = [f"{label_expr(key)} AS {key}" for key in by]
    cols = ", ".join([*keys, *(f"{expr} AS {name}" for name, expr in measures)])
    body, params = source.select()
    group = f" GROUP BY {', '.join(key_expr(key) for key in by)}" if by else ""
    positions = ", ".join(f"{key_expr(key)} NULLS LAST" for key in by)
    if top is not None:
        order = f" ORDER BY {rank_by} DESC NULLS LAST" + (f", {positions}" if by else "") + " LIMIT ?"
        params = (*params, top)
    else:
        order = f" ORDER BY {positions}" if by else ""
    return Query(f"SELECT {cols}{body}{group}{order}", params)


def unpriced(source: Source = SNAPSHOT) -> Query:
    """Calls no price was found for, by provider and model."""
    body, params = source.select("cost_usd IS NULL")
    return Query(
        f"SELECT provider, model, count(*) AS calls, sum({TOKENS}) AS tokens{body}"
        " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 NULLS LAST",
        params,
    )


def list_priced(keys: Sequence[str], source: Source = SNAPSHOT) -> Query:
    """Calls of the providers whose cost is a list-price equivalent (subscriptions), by provider."""
    if not keys:
        raise ReportError("list_priced needs at least one provider key")
    for key in keys:
        if not _PROVIDER_KEY.fullmatch(key):
            raise ReportError(f"not a provider key: {key!r}")
    body, params = source.select(f"provider IN ({', '.join(repr(k) for k in keys)})")
    return Query(
        f"SELECT provider, count(*) AS calls, sum(cost_usd) AS cost_usd{body} GROUP BY 1 ORDER BY 1", params
    )


_PROVIDER_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def series(bucket: str, measure: str, source: Source = SNAPSHOT) -> Query:
    """One measure of the calls per hour or day bucket, oldest first (for charts)."""
    if bucket not in BUCKET_SECONDS:
        raise ReportError(f"charts bucket by hour or day, not {bucket!r}")
    body, params = source.select()
    return Query(
        f"SELECT {key_expr(bucket)} AS bucket, {measure} AS value{body} GROUP BY 1 ORDER BY 1", params
    )


def actions(filters: Filters, top: int | None = None) -> Query:
    """The enforcement timeline; with ``top``, the ``top`` most recent actions (newest first)."""
    clause, params = where(filters)
    cols = "id, ts, bottle, action, actor, reason, result, duration_ms, detail"
    if top is None:
        return Query(f"SELECT {cols} FROM {LEDGER}.actions{clause} ORDER BY ts, id", params)
    return Query(
        f"SELECT {cols} FROM {LEDGER}.actions{clause} ORDER BY ts DESC, id DESC LIMIT ?", (*params, top)
    )


def refusals(filters: Filters) -> Query:
    """Refused requests per (bottle, host, code), most first; the ledger counts them per UTC day, so
    ``--since`` and ``--until`` select whole days (a day counts if it starts in the window)."""
    clause, params = where(filters)
    clause = clause.replace("ts >=", "day >=").replace("ts <", "day <")
    return Query(
        f"SELECT bottle, host, code, sum(count) AS refusals, max(last_ts) AS last_ts,"
        f" arg_max(last_request, last_ts) AS last_request FROM {LEDGER}.refusals{clause}"
        " GROUP BY bottle, host, code ORDER BY refusals DESC, bottle, host, code",
        params,
    )


BUDGETS = Query(f"SELECT scope, provider, unit, period, limit_amount FROM {LEDGER}.budgets ORDER BY 1, 2, 3")
BOTTLE_PARENTS = Query(f"SELECT name, parent FROM {LEDGER}.bottles")


def pools(period_starts: dict[str, float]) -> Query:
    """Pool counters of the current period of each period kind."""
    periods = sorted(period_starts)
    clause = " OR ".join("(period = ? AND period_start = ?)" for _ in periods)
    params = tuple(value for p in periods for value in (p, period_starts[p]))
    return Query(
        f"SELECT scope, provider, unit, period, used, reserved FROM {LEDGER}.pools WHERE {clause}", params
    )


def burn(now: float, calls: str = f"{LEDGER}.usage") -> Query:
    """Tokens and micro-USD per (bottle, agent, provider) over the last hour and the last day."""
    hour_ago, day_ago = now - 3600, now - 86400
    return Query(
        f"SELECT bottle, agent, provider,"
        f" coalesce(sum({TOKENS}) FILTER (WHERE ts > ?), 0),"
        f" coalesce(sum({TOKENS}), 0),"
        f" coalesce(sum(cost_micros) FILTER (WHERE ts > ?), 0),"
        f" coalesce(sum(cost_micros), 0)"
        f" FROM {calls} WHERE ts > ? AND ts <= ? GROUP BY 1, 2, 3",
        (hour_ago, hour_ago, day_ago, now),
    )
