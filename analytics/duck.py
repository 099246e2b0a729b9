"""DuckDB over the ledger: load the sqlite extension from its wheel and attach the ledger read-only.

Reports must work offline and must never fetch code, so extension auto-install and auto-load are
off and the sqlite extension is loaded by path from the ``duckdb-extension-sqlite`` wheel. DuckDB
derives the extension's entry point from the file name, so the wheel's ``sqlite.duckdb_extension``
is symlinked as ``sqlite_scanner.duckdb_extension`` in a fresh private directory (``mkdtemp``: a
predictable path in /tmp would let another user plant a library for root to load).

The ledger is attached ``READ_ONLY`` through SQLite itself, so a report reads a live WAL ledger
as one more reader: the meter keeps committing while it runs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import duckdb_extension_sqlite

from analytics.errors import ReportError
from analytics.queries import LEDGER

EXTENSION_FILE_NAME = "sqlite_scanner.duckdb_extension"
OFFLINE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def sqlite_extension_file() -> Path:
    """The sqlite extension shipped for this exact DuckDB version."""
    package = Path(duckdb_extension_sqlite.__file__).parent
    path = package / "extensions" / f"v{duckdb.__version__}" / "sqlite.duckdb_extension"
    if not path.is_file():
        raise ReportError(
            f"DuckDB's sqlite extension for duckdb {duckdb.__version__} is missing: "
            f"install duckdb-extension-sqlite=={duckdb.__version__}"
        )
    return path


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal, for the two statements DuckDB cannot parameterise (LOAD, ATTACH)."""
    if "\0" in text:
        raise ReportError(f"invalid path {text!r}: contains a NUL byte")
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def offline_duckdb() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that can never fetch an extension, with the wheel's sqlite extension loaded."""
    private_dir = tempfile.mkdtemp(prefix="bbnet-duckdb-")
    try:
        extension = Path(private_dir) / EXTENSION_FILE_NAME
        extension.symlink_to(sqlite_extension_file())
        con = duckdb.connect(":memory:", config=OFFLINE_CONFIG)
        try:
            con.execute("SET enable_progress_bar = false")  # it would draw into report output
            con.execute("SET preserve_insertion_order = false")  # bulk copies in less memory
            con.execute(f"LOAD {sql_string(str(extension))}")
            yield con
        finally:
            con.close()
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)


def attach_ledger(con: duckdb.DuckDBPyConnection, db: str | Path) -> Path:
    """Attach the ledger at ``db`` read-only as ``ledger``; returns its absolute path. Errors are one line."""
    path = Path(db).absolute()
    if not path.is_file():
        raise ReportError(f"no ledger at {path} (set --db or BBNET_DB)")
    try:
        con.execute(f"ATTACH {sql_string(str(path))} AS {LEDGER} (TYPE sqlite, READ_ONLY)")
        con.execute(f"SELECT 1 FROM {LEDGER}.usage LIMIT 0")
    except duckdb.Error as e:
        lines = str(e).strip().splitlines()
        raise ReportError(f"cannot read ledger {path}: {lines[0] if lines else type(e).__name__}") from e
    return path
