"""The ledger's connection: opening (0600, WAL), migrations, and write transactions.

The repository API is split by concern (:mod:`bbnet.budgets`, :mod:`bbnet.audit`,
:mod:`bbnet.ledger`); all of it goes through :meth:`Store._tx`, one ``BEGIN IMMEDIATE``
transaction that is retried while another writer holds the lock.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from bbnet.model import (
    Bottle,
    PoolView,
)
from bbnet.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB = "/var/lib/bbnet/ledger.db"
BUSY_TIMEOUT_MS = 10_000
_RETRY_SECONDS = 30.0
_MAX_DEPTH = 16


class LedgerError(Exception):
    """A ledger operation that cannot be done; the message is fit for a user."""


def default_path() -> str:
    return os.environ.get("BBNET_DB") or DEFAULT_DB


def bottle_from_row(r: sqlite3.Row) -> Bottle:
    return Bottle(
        name=r["name"],
        parent=r["parent"],
        netns=r["netns"],
        veth=r["veth"],
        addresses=tuple(json.loads(r["addresses"])),
        cgroup=r["cgroup"],
        policy=r["policy"],
        managed=bool(r["managed"]),
        labels=json.loads(r["labels"]),
        created_at=r["created_at"],
        removed_at=r["removed_at"],
    )


def pool_from_row(r: sqlite3.Row) -> PoolView:
    return PoolView(
        scope=r["scope"],
        provider=r["provider"],
        unit=r["unit"],
        period=r["period"],
        period_start=r["period_start"],
        limit=r["limit_amount"],
        used=r["used"],
        reserved=r["reserved"],
        slice_open=bool(r["slice_open"]) if "slice_open" in r.keys() else False,  # noqa: SIM118 - sqlite3.Row
    )


class Store:
    """A connection to the ledger file. Safe to share between threads of one process."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True) -> Self:
        """Open (and create, 0600, and migrate) the ledger at ``path``."""
        p = Path(path or default_path())
        if not p.exists():
            if not create:
                raise LedgerError(f"no ledger at {p} (run a bbnet command that creates it, or pass --db)")
            try:
                p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as e:
                raise LedgerError(f"cannot create ledger at {p}: {e.strerror}") from None
        elif not p.is_file():
            raise LedgerError(f"cannot open ledger at {p}: not a regular file")
        try:
            conn = sqlite3.connect(
                p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            ledger = cls(conn, p)
            ledger._migrate()
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"cannot open ledger at {p}: {e}") from None
        return ledger

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        row = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if row is None:
            return 0
        return int(self._conn.execute("SELECT version FROM schema_version").fetchone()[0])

    def _migrate(self) -> None:
        if self.schema_version() == SCHEMA_VERSION:
            return
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if c.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                c.execute("INSERT INTO schema_version VALUES (0)")
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.path} has schema v{current}, newer than this bbnet (v{SCHEMA_VERSION})"
                )
            for script in MIGRATIONS[current:]:
                for statement in _statements(script):
                    c.execute(statement)
            c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; retried while another writer holds the lock."""
        with self._lock:
            deadline = time.monotonic() + _RETRY_SECONDS
            while True:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e):
                        raise
                    if time.monotonic() > deadline:
                        raise LedgerError(
                            f"ledger {self.path} stayed locked for {_RETRY_SECONDS:.0f}s"
                        ) from None
                    time.sleep(0.005)
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def data_version(self) -> int:
        """Changes when another connection commits: a cheap "did anything change?" probe."""
        return int(self._read("PRAGMA data_version")[0][0])

    @staticmethod
    def _require_bottle(c: sqlite3.Connection, name: str) -> None:
        row = c.execute("SELECT 1 FROM bottles WHERE name = ? AND removed_at IS NULL", (name,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown bottle {name!r}")

    @staticmethod
    def _chain(c: sqlite3.Connection, name: str) -> list[str]:
        """The bottle and its ancestors, nearest first."""
        chain: list[str] = []
        current: str | None = name
        while current is not None and len(chain) < _MAX_DEPTH:
            row = c.execute("SELECT parent FROM bottles WHERE name = ?", (current,)).fetchone()
            if row is None:
                raise LedgerError(f"unknown bottle {current!r}")
            chain.append(current)
            current = row["parent"]
        return chain


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into complete SQL statements."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
    if buf.strip().strip(";").strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:60]!r}")
