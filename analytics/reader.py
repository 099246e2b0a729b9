"""Open the ledger for a report: DuckDB with the ledger attached, and where to read its calls.

Calls (the ``usage`` table) of a SQLite ledger are read from the incremental DuckDB copy
(analytics/cache.py) when it can be used, else straight from the ledger; both give the same numbers.
A PostgreSQL ledger is always read straight through DuckDB's postgres scanner. Small tables (budgets,
pools, actions, bottles) are always read straight through the attach.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from analytics.cache import CacheUnavailable, attached_copy, default_cache_file
from analytics.duck import attach_ledger, backend_of, offline_duckdb


@dataclass(frozen=True)
class LedgerReader:
    con: duckdb.DuckDBPyConnection
    calls: str | None  # the up-to-date DuckDB copy of the ledger's usage; None: scan the ledger
    note: str = ""  # why the copy could not be used, for the operator (not set when merely busy)


@contextmanager
def open_ledger(
    db: str | Path, cache_dir: Path | None = None, use_cache: bool = True
) -> Iterator[LedgerReader]:
    """The ledger at ``db``, read-only, with its calls in the DuckDB copy unless that is busy or unwritable."""
    with offline_duckdb(backend_of(db)) as con, ExitStack() as stack:
        path = attach_ledger(con, db)
        if path is None or not use_cache:  # PostgreSQL: scanned where it is, no local copy
            yield LedgerReader(con, None)
            return
        try:
            calls = stack.enter_context(attached_copy(con, path, default_cache_file(path, cache_dir)))
        except CacheUnavailable as e:
            note = "" if e.busy else f"report cache not used ({e}): scanning the ledger"
            yield LedgerReader(con, None, note)
            return
        yield LedgerReader(con, calls)
