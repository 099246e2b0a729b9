"""An incremental DuckDB copy of the ledger's ``usage`` table, so reports aggregate columnar data.

Copying rows out of SQLite dominates a report over millions of calls, so each report copies only
the calls committed since the last one into a DuckDB file next to the ledger
(``<ledger>.reports.duckdb``, 0600) and aggregates there. The ledger stays the source of truth: the
copy is topped up at the start of every report, so reports still show live data.

This is sound because the ledger only ever appends usage rows: ``Ledger.commit`` inserts one row
per call (bbnet/budgets.py) and nothing updates or deletes them (the one ``UPDATE usage`` is the v2
migration filling ``cost_micros``, a column not copied here; the schema version is part of the
copy's identity anyway). SQLite serialises writers, so every row committed after a reader saw
``max(id) = N`` has an id above N: "rows with id in (last copied, N]" is exactly what is new.

A replaced or reset ledger is detected by the copy's identity (schema version, key of the first
row, key at the last copied id) and rebuilds the copy. One report at a time updates it (a file
lock); a report that finds it busy or cannot write it gets ``None`` and scans the ledger instead.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

import duckdb
import pyarrow as pa

from analytics.duck import sql_string
from analytics.queries import BUCKETS, LEDGER

CACHE = "usage_cache"  # the catalog name of the attached copy
CACHE_SUFFIX = ".reports.duckdb"
LAYOUT = 3  # bump when the copy's tables change: an older copy is rebuilt
LOCK_WAIT_S = 0.25  # how long a report waits for another one's update before scanning the ledger
SMALL_TAIL_ROWS = 200_000  # up to this many new calls are read by sqlite3, more by DuckDB's scanner

COPIED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("id", pa.int64()),
    ("ts", pa.float64()),
    ("bottle", pa.string()),
    ("agent", pa.string()),
    ("provider", pa.string()),
    ("model", pa.string()),
    ("node", pa.string()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cache_write_tokens", pa.int64()),
    ("cache_read_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()),
    ("estimated", pa.int64()),
    ("lost", pa.int64()),
    ("cost_usd", pa.float64()),
    ("cost_micros", pa.int64()),
)
_NAMES = ", ".join(name for name, _ in COPIED_COLUMNS)
_DUCK_TYPES = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}
_CREATE = (
    f"CREATE TABLE {CACHE}.usage ("
    + ", ".join(f"{name} {_DUCK_TYPES[kind]}" for name, kind in COPIED_COLUMNS)
    + ", hour_start BIGINT, day_start BIGINT)",  # queries.BUCKETS, computed once per call
    f"CREATE TABLE {CACHE}.mark (layout BIGINT, schema_version BIGINT, first_key VARCHAR,"
    " last_id BIGINT, last_key VARCHAR)",
)


class CacheUnavailable(Exception):
    """The copy cannot be used now (busy, unwritable, broken): the report scans the ledger instead."""

    def __init__(self, message: str, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy  # another report holds it: expected, not worth telling the operator


@dataclass(frozen=True)
class Mark:
    """Where a usage table stands: what identifies it and how far it goes."""

    schema_version: int
    first_key: str | None  # key of the lowest id: a different ledger has a different one
    last_id: int  # 0 when there is no call
    last_key: str | None


def default_cache_file(ledger: Path, cache_dir: Path | None = None) -> Path:
    """``<ledger>.reports.duckdb``, or a file named after the ledger's path inside ``cache_dir``."""
    if cache_dir is None:
        return ledger.with_name(ledger.name + CACHE_SUFFIX)
    flat = str(ledger).strip("/").replace("/", "%")
    return cache_dir / (flat + CACHE_SUFFIX)


def plan(copied: Mark | None, ledger: Mark, key_at_copied_last: str | None) -> str:
    """``build`` (start over), ``top-up`` (copy what is new) or ``current``, from the two marks.

    ``key_at_copied_last`` is the key the ledger holds at ``copied.last_id`` (None: no such row).
    """
    if copied is None:
        return "build"
    same_ledger = (
        copied.schema_version == ledger.schema_version
        and copied.first_key == ledger.first_key
        and copied.last_id <= ledger.last_id
        and key_at_copied_last == copied.last_key
    )
    if not same_ledger:
        return "build"
    return "current" if copied.last_id == ledger.last_id else "top-up"


def _ledger_uri(ledger: Path) -> str:
    return f"file:{pathname2url(str(ledger))}?mode=ro"


def read_mark(db: sqlite3.Connection, copied_last_id: int) -> tuple[Mark, str | None]:
    """The ledger's mark, and the key it holds at ``copied_last_id``, in one read transaction."""
    db.execute("BEGIN")
    try:
        (version,) = db.execute("SELECT version FROM schema_version").fetchone() or (0,)
        first = db.execute("SELECT key FROM usage ORDER BY id LIMIT 1").fetchone()
        last = db.execute("SELECT id, key FROM usage ORDER BY id DESC LIMIT 1").fetchone()
        at = db.execute("SELECT key FROM usage WHERE id = ?", (copied_last_id,)).fetchone()
    finally:
        db.execute("COMMIT")
    mark = Mark(
        schema_version=int(version),
        first_key=first[0] if first else None,
        last_id=int(last[0]) if last else 0,
        last_key=last[1] if last else None,
    )
    return mark, at[0] if at else None


def _copied_mark(con: duckdb.DuckDBPyConnection) -> Mark | None:
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [CACHE]).fetchall()
    if {name for (name,) in tables} != {"usage", "mark"}:
        return None
    row = con.execute(
        f"SELECT layout, schema_version, first_key, last_id, last_key FROM {CACHE}.mark"
    ).fetchone()
    if row is None or row[0] != LAYOUT:
        return None
    return Mark(int(row[1]), row[2], int(row[3]), row[4])


def _tail_from_sqlite(db: sqlite3.Connection, after: int, upto: int) -> pa.Table:
    """New calls read by sqlite3: exact values, and an indexed range instead of a full scan."""
    rows = db.execute(
        f"SELECT {_NAMES} FROM usage WHERE id > ? AND id <= ? ORDER BY id", (after, upto)
    ).fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COPIED_COLUMNS]
    return pa.table(
        {
            name: pa.array(values, type=kind)
            for (name, kind), values in zip(COPIED_COLUMNS, columns, strict=True)
        }
    )


def _copy(
    con: duckdb.DuckDBPyConnection, db: sqlite3.Connection, action: str, copied: Mark | None, ledger: Mark
) -> None:
    """Build or top up the copy to ``ledger.last_id`` in one DuckDB transaction (a crash keeps the old copy)."""
    con.execute("BEGIN")
    try:
        after = 0
        if action == "build":
            for table in ("usage", "mark"):
                con.execute(f"DROP TABLE IF EXISTS {CACHE}.{table}")
            for statement in _CREATE:
                con.execute(statement)
        elif copied is not None:
            after = copied.last_id
        if ledger.last_id - after > SMALL_TAIL_ROWS:
            con.execute(
                f"INSERT INTO {CACHE}.usage SELECT {_NAMES}, {BUCKETS} FROM {LEDGER}.usage WHERE id > ? AND id <= ?",
                [after, ledger.last_id],
            )
        elif ledger.last_id > after:
            tail = _tail_from_sqlite(db, after, ledger.last_id)
            con.register("usage_tail", tail)
            con.execute(f"INSERT INTO {CACHE}.usage SELECT {_NAMES}, {BUCKETS} FROM usage_tail")
            con.unregister("usage_tail")
        con.execute(f"DELETE FROM {CACHE}.mark")
        con.execute(
            f"INSERT INTO {CACHE}.mark VALUES (?, ?, ?, ?, ?)",
            [LAYOUT, ledger.schema_version, ledger.first_key, ledger.last_id, ledger.last_key],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute(f"CHECKPOINT {CACHE}")


@contextmanager
def _private_files() -> Iterator[None]:
    """New files (the copy, its WAL, the lock) readable by the owner only: they hold usage data."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@contextmanager
def _exclusive(lock_file: Path, wait_s: float) -> Iterator[None]:
    """Hold ``lock_file`` exclusively, or raise :class:`CacheUnavailable` after ``wait_s``."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise CacheUnavailable(f"cannot create {lock_file}: {e.strerror or e}") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CacheUnavailable("another report is using it", busy=True) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def attached_copy(
    con: duckdb.DuckDBPyConnection, ledger: Path, cache_file: Path, wait_s: float = LOCK_WAIT_S
) -> Iterator[str]:
    """Attach the copy of ``ledger``'s usage to ``con``, brought up to date; yields its table name.

    ``con`` must already have the ledger attached as ``ledger``. The lock is held until the report
    is done, so all of its sections read the same rows. Raises :class:`CacheUnavailable` when the
    copy is busy or cannot be written; the caller then scans the ledger.
    """
    with _exclusive(cache_file.with_name(cache_file.name + ".lock"), wait_s):
        _attach_up_to_date(con, ledger, cache_file)
        try:
            yield f"{CACHE}.usage"
        finally:
            con.execute(f"DETACH DATABASE IF EXISTS {CACHE}")


def _attach_up_to_date(con: duckdb.DuckDBPyConnection, ledger: Path, cache_file: Path) -> None:
    try:
        with _private_files():
            con.execute(f"ATTACH {sql_string(str(cache_file))} AS {CACHE}")
    except duckdb.Error as e:
        raise CacheUnavailable(f"cannot open {cache_file}: {_first_line(e)}") from None
    try:
        os.chmod(cache_file, 0o600)
        with closing(sqlite3.connect(_ledger_uri(ledger), uri=True, isolation_level=None)) as db:
            copied = _copied_mark(con)
            mark, key_at = read_mark(db, copied.last_id if copied else 0)
            action = plan(copied, mark, key_at)
            if action != "current":
                with _private_files():
                    _copy(con, db, action, copied, mark)
    except (duckdb.Error, sqlite3.Error, OSError) as e:
        con.execute(f"DETACH DATABASE IF EXISTS {CACHE}")
        raise CacheUnavailable(f"cannot update {cache_file}: {_first_line(e)}") from None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
