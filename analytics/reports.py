"""The four reports: run the report SQL on an attached ledger and shape the rows into tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from analytics import queries
from analytics.budgets import Burn, concerns_bottle, current_period_starts, pool_burn
from analytics.queries import COST_MEASURES, LEDGER, USAGE_MEASURES, Filters, Query, Source
from analytics.reader import LedgerReader
from analytics.table import Column, Report, Series, Table, bucket_label, iso
from bbnet.providers import LIST_PRICE_KEYS

KINDS = ("usage", "cost", "budgets", "actions", "refusals")
_KEY_COLUMNS = {key: Column(key, "str") for key in queries.BY_KEYS}
_USAGE_COLUMNS = (
    Column("calls", "int"),
    *(Column(name, "int", "tokens") for name, _ in USAGE_MEASURES[1:-2]),
    Column("estimated_calls", "int"),
    Column("lost_calls", "int"),
)
_COST_COLUMNS = (
    Column("calls", "int"),
    Column("tokens", "int", "tokens"),
    Column("cost_usd", "float", "usd"),
    Column("unpriced_calls", "int"),
    Column("lost_calls", "int"),
)
_UNPRICED_COLUMNS = (
    Column("provider", "str"),
    Column("model", "str"),
    Column("calls", "int"),
    Column("tokens", "int", "tokens"),
)
_LIST_PRICE_COLUMNS = (Column("provider", "str"), Column("calls", "int"), Column("cost_usd", "float", "usd"))
_ACTION_COLUMNS = (
    Column("id", "int"),
    Column("time", "str"),
    Column("bottle", "str"),
    Column("action", "str"),
    Column("actor", "str"),
    Column("reason", "str"),
    Column("result", "str"),
    Column("duration_ms", "float"),
    Column("detail", "str"),
)
_REFUSAL_COLUMNS = (
    Column("bottle", "str"),
    Column("host", "str"),
    Column("code", "str"),
    Column("refusals", "int"),
    Column("last", "str"),
    Column("last_request", "str"),
)
_BUDGET_COLUMNS = (
    Column("scope", "str"),
    Column("provider", "str"),
    Column("unit", "str"),
    Column("period", "str"),
    Column("limit", "float"),
    Column("used", "float"),
    Column("reserved", "float"),
    Column("remaining", "float"),
    Column("burn_per_hour_1h", "float"),
    Column("burn_per_hour_24h", "float"),
    Column("exhausts_at", "str"),
    Column("status", "str"),
)


def _run(con: duckdb.DuckDBPyConnection, query: Query) -> list[tuple[Any, ...]]:
    return con.execute(query.sql, list(query.params)).fetchall()


def _calls(reader: LedgerReader, filters: Filters, columns: str) -> Source:
    """The calls to report on: the DuckDB copy filtered in place, or a snapshot scanned from the ledger."""
    if reader.calls is not None:
        return Source(reader.calls, filters)
    _run(reader.con, queries.snapshot(filters, columns))
    return queries.SNAPSHOT


def _series(
    con: duckdb.DuckDBPyConnection, by: Sequence[str], measure: str, expr: str, source: Source
) -> Series:
    bucket = "hour" if "hour" in by else "day"
    rows = _run(con, queries.series(bucket, expr, source))
    return Series(
        measure, bucket, tuple((bucket_label(bucket, start), float(value or 0)) for start, value in rows)
    )


def usage(
    reader: LedgerReader,
    by: Sequence[str],
    filters: Filters,
    top: int | None = None,
    chart: bool = False,
) -> Report:
    """Calls and tokens (input, cache writes and reads, output, reasoning) per group."""
    source = _calls(reader, filters, queries.USAGE_COLUMNS)
    rows = _run(reader.con, queries.aggregate(by, USAGE_MEASURES, source, top, rank_by="tokens"))
    columns = (*(_KEY_COLUMNS[key] for key in by), *_USAGE_COLUMNS)
    table = Table("usage", columns, tuple(rows))
    series = _series(reader.con, by, "tokens", f"sum({queries.TOKENS})", source) if chart else None
    return Report(table, series=series)


def cost(
    reader: LedgerReader,
    by: Sequence[str],
    filters: Filters,
    top: int | None = None,
    chart: bool = False,
) -> Report:
    """USD per group, as recorded per call from genai-prices; unpriced calls counted and listed apart,
    and the providers whose cost is a list-price equivalent of a subscription listed apart too."""
    source = _calls(reader, filters, queries.COST_COLUMNS)
    rows = _run(reader.con, queries.aggregate(by, COST_MEASURES, source, top, rank_by="cost_usd"))
    columns = (*(_KEY_COLUMNS[key] for key in by), *_COST_COLUMNS)
    table = Table("cost", columns, tuple(rows))
    unpriced = Table("unpriced_models", _UNPRICED_COLUMNS, tuple(_run(reader.con, queries.unpriced(source))))
    # subscriptions (Codex on ChatGPT, Code Assist): their cost is the API list price, not an invoice
    keys = sorted(LIST_PRICE_KEYS)
    list_priced = Table(
        "list_price_equivalents",
        _LIST_PRICE_COLUMNS,
        tuple(_run(reader.con, queries.list_priced(keys, source))),
    )
    series = _series(reader.con, by, "cost_usd", "sum(cost_usd)", source) if chart else None
    return Report(table, (unpriced, list_priced), series)


def actions(reader: LedgerReader, filters: Filters, top: int | None = None) -> Report:
    """The enforcement timeline, oldest first, with who asked and why."""
    rows = _run(reader.con, queries.actions(filters, top))
    if top is not None:
        rows.reverse()
    shaped = tuple((row[0], iso(row[1]), *row[2:]) for row in rows)
    return Report(Table("actions", _ACTION_COLUMNS, shaped))


def refusals(reader: LedgerReader, filters: Filters) -> Report:
    """Requests the egress policy refused, per bottle, host and code (``-``: not a bottle's address)."""
    rows = _run(reader.con, queries.refusals(filters))
    shaped = tuple((b or "-", host, code, int(n), iso(last), req) for b, host, code, n, last, req in rows)
    return Report(Table("refusals", _REFUSAL_COLUMNS, shaped))


def budgets(reader: LedgerReader, now: float, bottle: str | None = None) -> Report:
    """Every budget's pool in its current period: counters, burn rates, projected exhaustion."""
    con = reader.con
    parents: dict[str, str | None] = dict(_run(con, queries.BOTTLE_PARENTS))
    counters = {
        (scope, provider, unit, period): (used, reserved)
        for scope, provider, unit, period, used, reserved in _run(
            con, queries.pools(current_period_starts(now))
        )
    }
    calls = reader.calls if reader.calls is not None else f"{LEDGER}.usage"
    burns = [Burn(*row) for row in _run(con, queries.burn(now, calls))]
    rows = []
    for scope, provider, unit, period, limit in _run(con, queries.BUDGETS):
        if bottle is not None and not concerns_bottle(scope, bottle, parents):
            continue
        used, reserved = counters.get((scope, provider, unit, period), (0, 0))
        pool = pool_burn(scope, provider, unit, period, limit, used, reserved, burns, parents, now)
        rows.append(
            (
                pool.scope,
                pool.provider,
                pool.unit,
                pool.period,
                pool.limit,
                pool.used,
                pool.reserved,
                pool.remaining,
                pool.burn_1h,
                pool.burn_24h,
                iso(pool.exhausts_at) if pool.exhausts_at is not None else None,
                pool.status,
            )
        )
    return Report(Table("budgets", _BUDGET_COLUMNS, tuple(rows)))
