"""The ledger's connection: opening, migrations, and write transactions, on SQLite or PostgreSQL.

The ledger is a SQLite file (0600, WAL) or, when its location is a ``postgresql://`` URL, a
PostgreSQL database (psycopg 3, through the adapter in :mod:`bbnet.pg`). The repository API is
split by concern (:mod:`bbnet.budgets`, :mod:`bbnet.pool_ops`, :mod:`bbnet.audit`,
:mod:`bbnet.ledger`, :mod:`bbnet.egress_ops`) and written once; every write goes through :meth:`Store._tx`:

* SQLite: one ``BEGIN IMMEDIATE`` transaction, retried while another writer holds the lock;
* PostgreSQL: one transaction whose first statement takes a transaction-scoped advisory lock
  (``pg_advisory_xact_lock``), held until COMMIT or ROLLBACK. Writers are serialised exactly as
  SQLite's are, and under READ COMMITTED each later statement sees every commit made before the
  lock was granted, so a read-modify-write of pools cannot interleave with another. (SERIALIZABLE
  with retry would need every transaction body to be re-runnable, which a ``with`` block is not.)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, Self

import psycopg

from bbnet import pg
from bbnet.checkpoint import Checkpointer
from bbnet.defaults import DEFAULT_DB
from bbnet.dialect import POSTGRES, SQLITE, pg_schema
from bbnet.model import (
    Bottle,
    PoolView,
)
from bbnet.names import node_name
from bbnet.plans import Plans
from bbnet.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000
_RETRY_SECONDS = 30.0
_MAX_DEPTH = 16


class LedgerError(Exception):
    """A ledger operation that cannot be done; the message is fit for a user."""


class LedgerUnreachable(LedgerError):
    """The ledger's server cannot be reached (PostgreSQL down, network gone): retrying may help."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """What the ops code uses of a connection: ``sqlite3.Connection`` or :class:`bbnet.pg.PgConnection`."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...


def default_path() -> str:
    return os.environ.get("BBNET_DB") or DEFAULT_DB


def default_node() -> str:
    """The machine's host name (its first label, lowercased): the default name of the node that
    meters a call (settings ``node:``)."""
    return socket.gethostname().split(".")[0].lower()


def bottle_from_row(r: Any) -> Bottle:
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


def pool_from_row(r: Any) -> PoolView:
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
    """A connection to the ledger. Safe to share between threads of one process."""

    def __init__(
        self,
        conn: Any,
        *,
        path: Path | None = None,
        url: str | None = None,
        node: str = "",
        ready: bool = True,
    ) -> None:
        self._conn = conn
        self._ready = ready  # migrated; False: a lazy PostgreSQL open that has not reached the server yet
        self._lock = threading.RLock()
        self.plans = Plans()  # the paths' pools, between the meter's calls (bbnet/plans.py)
        self._path = path  # the SQLite file; None on PostgreSQL
        self.url = url  # the PostgreSQL URL (with its password: never print it); None on SQLite
        self.dialect = POSTGRES if url is not None else SQLITE
        self.where = pg.redact(url) if url is not None else str(path)  # for messages
        try:
            self.node = node_name(node or default_node())
        except ValueError as e:
            conn.close()
            raise LedgerError(f"{e} (set node: in the settings)") from None

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL ledger has none)."""
        if self._path is None:
            raise LedgerError(f"ledger {self.where} is a PostgreSQL database, not a file")
        return self._path

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls, target: str | Path | None = None, *, create: bool = True, node: str = "", lazy: bool = False
    ) -> Self:
        """Open (and create, and migrate) the ledger at ``target``: a file path or a ``postgresql://`` URL.

        ``node`` names this host in the usage rows it writes (default: the host name). ``lazy``
        (PostgreSQL): a server that cannot be reached yet is no error here; every call raises
        :class:`LedgerUnreachable` until it can be, and the first that reaches it migrates. A server
        that answers and refuses (wrong password, no such database) is always an error here."""
        where = str(target) if target is not None else default_path()
        if pg.is_url(where):
            return cls._open_postgres(where, create, node, lazy)
        return cls._open_sqlite(Path(where), create, node)

    @classmethod
    def _open_sqlite(cls, p: Path, create: bool, node: str) -> Self:
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
            ledger = cls(conn, path=p, node=node)
            ledger._migrate(create)
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"cannot open ledger at {p}: {e}") from None
        return ledger

    @classmethod
    def _open_postgres(cls, url: str, create: bool, node: str, lazy: bool) -> Self:
        try:
            pg.check_url(url)
        except ValueError as e:
            raise LedgerError(f"cannot open ledger: {e}") from None
        try:
            conn = pg.PgConnection(url)
        except psycopg.Error as e:
            problem = f"cannot open ledger at {pg.redact(url)}: {pg.describe(url, e)}"
            if pg.refused(e):
                raise LedgerError(problem) from None
            if not lazy:
                raise LedgerUnreachable(problem) from None
            return cls(pg.PgConnection(url, connect=False), url=url, node=node, ready=False)
        ledger = cls(conn, url=url, node=node)
        try:
            ledger._migrate(create)
        except BaseException:
            conn.close()
            raise
        return ledger

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        exists = (
            "SELECT to_regclass('schema_version') IS NOT NULL"
            if self.dialect == POSTGRES
            else "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_version'"
        )
        if not self._read(exists)[0][0]:
            return 0
        return int(self._read("SELECT version FROM schema_version")[0][0])

    def _migrate(self, create: bool = True) -> None:
        if self.schema_version() == SCHEMA_VERSION:
            return
        if not create and self.dialect == POSTGRES and self.schema_version() == 0:
            raise LedgerError(f"no ledger at {self.where} (run a bbnet command that creates it)")
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if c.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                c.execute("INSERT INTO schema_version VALUES (0)")
            current = int(c.execute("SELECT version FROM schema_version").fetchone()[0])
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"ledger {self.where} has schema v{current}, newer than this bbnet (v{SCHEMA_VERSION})"
                )
            for script in MIGRATIONS[current:]:
                for statement in _statements(script):
                    c.execute(pg_schema(statement) if self.dialect == POSTGRES else statement)
            c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _tx(self, hot: bool = False) -> Iterator[Conn]:
        """One write transaction: SQLite's ``BEGIN IMMEDIATE`` (retried while another writer holds
        the lock), or PostgreSQL's transaction under the ledger's advisory write lock.

        ``hot``: the meter's reserves, commits, releases and renewals, which change no budget,
        bottle or pool but their counters, so the paths' plans (:mod:`bbnet.plans`) stand if no
        other connection has committed since they were made. Any other write, and any rollback,
        forgets them."""
        with self._lock:
            if not hot:
                self.plans.forget()
            try:
                with self._begin(hot) as c:
                    yield c
            except BaseException:
                self.plans.forget()
                raise
            if not hot:
                self.plans.forget()

    @contextmanager
    def _begin(self, hot: bool) -> Iterator[Conn]:
        if self.dialect == POSTGRES:
            self._ensure_ready()
            self.plans.forget()  # its snapshot digest moves with this connection's own writes
            with self._unreachable_as_error(), self._conn.transaction() as c:
                yield c
            return
        deadline = time.monotonic() + _RETRY_SECONDS
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() > deadline:
                    raise LedgerError(f"ledger {self.path} stayed locked for {_RETRY_SECONDS:.0f}s") from None
                time.sleep(0.005)
        try:
            if hot:  # read under the write lock: every commit before it shows
                self.plans.check(int(self._conn.execute("PRAGMA data_version").fetchone()[0]))
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def _unreachable_as_error(self) -> Iterator[None]:
        """PostgreSQL's "cannot reach the server" (and a lock held past its timeout) as a LedgerError."""
        try:
            yield
        except psycopg.errors.LockNotAvailable:
            raise LedgerError(f"ledger {self.where} stayed locked for {pg.LOCK_TIMEOUT_S}s") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            raise LedgerUnreachable(
                f"ledger {self.where} unreachable: {pg.describe(self.url or '', e)}"
            ) from None

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._ensure_ready()
            with self._unreachable_as_error():
                return self._conn.execute(sql, args).fetchall()

    def _ensure_ready(self) -> None:
        """A lazy open's migration, on the first call that reaches the server."""
        if self._ready:
            return
        self._ready = True  # the migration's own statements come through here
        try:
            self._migrate()
        except BaseException:
            self._ready = False
            raise

    def checkpoint_in_background(self) -> Checkpointer | None:
        """Stop this connection's COMMITs from running WAL checkpoints and run them on a thread
        instead (:mod:`bbnet.checkpoint`); the thread, to stop when done. None on PostgreSQL."""
        if self.dialect == POSTGRES:
            return None
        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        return Checkpointer(self.path)

    def data_version(self) -> int:
        """Changes when another connection commits: a cheap "did anything change?" probe.

        SQLite: ``PRAGMA data_version``. PostgreSQL: a digest of the server's current snapshot
        (xmin, xmax and the transactions in progress), which changes whenever a writing transaction
        starts or ends anywhere on the server: it may change with nothing changed here (a write in
        another database), never the other way round."""
        if self.dialect == POSTGRES:
            text = str(self._read("SELECT pg_current_snapshot()::text")[0][0])
            return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        return int(self._read("PRAGMA data_version")[0][0])

    def stamp(self) -> tuple[int, int]:
        """What this connection's plans stand on: :meth:`data_version` (another connection's
        commits) and the plans' generation (this connection's own writes but the hot path's)."""
        return self.data_version(), self.plans.generation

    @staticmethod
    def _require_bottle(c: Conn, name: str) -> None:
        row = c.execute("SELECT 1 FROM bottles WHERE name = ? AND removed_at IS NULL", (name,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown bottle {name!r}")

    @staticmethod
    def _chain(c: Conn, name: str) -> list[str]:
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
