"""DuckDB over the ledger: load the scanner extension from its wheel and attach the ledger read-only.

Reports must work offline and must never fetch code, so extension auto-install and auto-load are
off and the extension is loaded by path from its wheel: ``duckdb-extension-sqlite`` for a SQLite
ledger, ``duckdb-extension-postgres`` for a PostgreSQL one (each pinned to duckdb's version).
DuckDB derives an extension's entry point from the file name, so the wheel's
``sqlite.duckdb_extension`` (``postgres.duckdb_extension``) is symlinked as
``sqlite_scanner.duckdb_extension`` (``postgres_scanner.duckdb_extension``) in a fresh private
directory (``mkdtemp``: a predictable path in /tmp would let another user plant a library for root
to load).

The ledger is attached ``READ_ONLY``: a SQLite file through SQLite itself (one more reader of a
live WAL ledger), a PostgreSQL database as one more client. The meter keeps committing while a
report runs. DuckDB's errors name the connection string: its password is scrubbed before any
message leaves here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import duckdb
import duckdb_extension_postgres
import duckdb_extension_sqlite

from analytics.errors import ReportError
from analytics.queries import LEDGER
from bbnet import pg

# backend -> (wheel package, the file it ships, the name DuckDB must load it under)
EXTENSIONS: dict[str, tuple[ModuleType, str, str]] = {
    "sqlite": (duckdb_extension_sqlite, "sqlite.duckdb_extension", "sqlite_scanner.duckdb_extension"),
    "postgres": (duckdb_extension_postgres, "postgres.duckdb_extension", "postgres_scanner.duckdb_extension"),
}
OFFLINE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def backend_of(db: str | Path) -> str:
    """``postgres`` for a ``postgresql://`` URL, else ``sqlite``."""
    return "postgres" if pg.is_url(str(db)) else "sqlite"


def extension_file(backend: str = "sqlite") -> Path:
    """The scanner extension shipped for this exact DuckDB version."""
    package, shipped, _ = EXTENSIONS[backend]
    path = Path(str(package.__file__)).parent / "extensions" / f"v{duckdb.__version__}" / shipped
    if not path.is_file():
        raise ReportError(
            f"DuckDB's {backend} extension for duckdb {duckdb.__version__} is missing: "
            f"install duckdb-extension-{backend}=={duckdb.__version__}"
        )
    return path


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal, for the two statements DuckDB cannot parameterise (LOAD, ATTACH)."""
    if "\0" in text:
        raise ReportError(f"invalid path {text!r}: contains a NUL byte")
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def offline_duckdb(backend: str = "sqlite") -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that can never fetch an extension, with the wheel's ``backend`` scanner loaded."""
    private_dir = tempfile.mkdtemp(prefix="bbnet-duckdb-")
    try:
        extension = Path(private_dir) / EXTENSIONS[backend][2]
        extension.symlink_to(extension_file(backend))
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


def attach_ledger(con: duckdb.DuckDBPyConnection, db: str | Path) -> Path | None:
    """Attach the ledger at ``db`` read-only as ``ledger``; returns its absolute path (None: a
    PostgreSQL ledger). Errors are one line, without a password."""
    if backend_of(db) == "postgres":
        url = str(db)
        try:
            pg.check_url(url)
        except ValueError as e:
            raise ReportError(f"cannot read ledger: {e}") from None
        _attach(con, f"ATTACH {sql_string(url)} AS {LEDGER} (TYPE postgres, READ_ONLY)", pg.redact(url), url)
        return None
    path = Path(db).absolute()
    if not path.is_file():
        raise ReportError(f"no ledger at {path} (set --db or BBNET_DB)")
    _attach(con, f"ATTACH {sql_string(str(path))} AS {LEDGER} (TYPE sqlite, READ_ONLY)", str(path))
    return path


def _attach(con: duckdb.DuckDBPyConnection, statement: str, where: str, url: str = "") -> None:
    try:
        con.execute(statement)
        con.execute(f"SELECT 1 FROM {LEDGER}.usage LIMIT 0")
    except duckdb.Error as e:
        lines = str(e).strip().splitlines()
        text = lines[0] if lines else type(e).__name__
        if url:
            text = text.replace(url, where)
            text = pg.describe(url, RuntimeError(text))
        raise ReportError(f"cannot read ledger {where}: {text}") from e
