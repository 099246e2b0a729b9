"""The PostgreSQL side of the ledger's connection: a thin adapter so the ops code runs unchanged.

:class:`PgConnection` looks like the part of ``sqlite3.Connection`` the ops use: ``execute(sql,
args)`` with SQLite's placeholders (translated by :mod:`bbnet.dialect`) returning a cursor with
``fetchone``/``fetchall``/``rowcount``, rows indexable by name and by position (:class:`Row`).
Integer sums come back as ``int`` (PostgreSQL sums ``BIGINT`` as ``numeric``).

A broken connection is reopened on the next call; every failure to reach the server is a
:class:`~bbnet.store.LedgerError`-shaped one-liner (:func:`describe`) that never shows the password.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.adapt import Loader
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bbnet.dialect import pg_query, pick

# Every write transaction takes this transaction-scoped advisory lock first (see Store._tx).
WRITE_LOCK = 0x62626E6574  # "bbnet"
LOCK_TIMEOUT_S = 30
RETRY_S = 1.0
# libpq options: connect, and notice a dead server, within seconds (a meter must not hang on a
# vanished host); the URL's own options win
_CONNECT = (
    "connect_timeout=5 keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3"
    " tcp_user_timeout=10000 application_name=bbnet"
)


def is_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def check_url(url: str) -> None:
    """Raise ``ValueError`` naming what is wrong (never the URL itself) when ``url`` cannot be parsed."""
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
    except ValueError as e:
        raise ValueError(f"invalid PostgreSQL URL ({e})") from None


def redact(url: str) -> str:
    """``url`` without its password (``postgresql://user:***@host/db``); an unparseable URL is
    hidden after its scheme (it may hold a password where a parser cannot find it)."""
    try:
        check_url(url)
    except ValueError:
        return url.partition("://")[0] + "://***"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def describe(url: str, e: Exception) -> str:
    """One line for a psycopg failure, with the password scrubbed from whatever the driver said."""
    lines = [s.strip() for s in str(e).strip().splitlines() if s.strip()]
    # libpq: "connection failed: connection to server at ... failed: FATAL:  password ..."
    text = (lines[0] if lines else type(e).__name__).removeprefix("connection failed: ")
    try:
        password = urlsplit(url).password
    except ValueError:  # callers check the URL first (check_url); nothing to find in it here
        password = None
    if password:
        text = text.replace(password, "***")
    return " ".join(text.split())


def refused(e: Exception) -> bool:
    """The server answered and refused (wrong password, no such database), or the URL is wrong:
    retrying will not help, unlike a server that cannot be reached."""
    return any(mark in str(e) for mark in ("FATAL:", "connection is bad", "invalid", "missing"))


class Row(Sequence[Any]):
    """One result row, by position and by column name (like ``sqlite3.Row``); ``dict(row)`` works."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: Any) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    index = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class _IntegralNumeric(Loader):
    """``numeric`` as ``int`` when integral (a ``sum`` of BIGINTs), else ``float``."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        return float(text) if b"." in text or b"N" in text else int(text)


class PgConnection:
    """One psycopg connection (autocommit: reads are single statements, writes open a transaction)."""

    def __init__(self, url: str, *, connect: bool = True) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._retry_at = 0.0  # after a failed connect: no new attempt before this (monotonic)
        self._failure = ""
        self._in_tx = False  # inside transaction(): a broken connection's statement is not retried
        if connect:
            self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        """Connect; a server that could not be reached is tried again at most every RETRY_S seconds,
        so callers on an event loop (the meter) block for at most one attempt per interval."""
        if time.monotonic() < self._retry_at:
            raise psycopg.OperationalError(self._failure)
        try:
            conn = psycopg.connect(
                make_conninfo(_CONNECT, **conninfo_to_dict(self.url)),
                autocommit=True,
                row_factory=_row_factory,
            )
        except psycopg.OperationalError as e:
            self._retry_at, self._failure = time.monotonic() + RETRY_S, str(e)
            raise
        conn.adapters.register_loader("numeric", _IntegralNumeric)
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        self._conn = conn
        return conn

    def _live(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            return self._connect()
        return self._conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """One statement; outside a transaction, a connection found broken (the server restarted
        since the last call) is replaced and the statement tried once more: a read is safe to repeat."""
        query, order = pg_query(sql)
        params = pick(order, tuple(args))
        conn = self._live()
        try:
            return conn.execute(query, params)
        except psycopg.OperationalError:
            if not conn.broken or self._in_tx:
                raise
            return self._live().execute(query, params)

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        """A write transaction holding :data:`WRITE_LOCK` from its first statement to its end."""
        conn = self._begin()
        try:
            yield self
        except BaseException:
            self._in_tx = False
            with suppress(psycopg.Error):  # a broken connection has rolled back already
                conn.execute("ROLLBACK")
            raise
        self._in_tx = False
        conn.execute("COMMIT")

    def _begin(self) -> psycopg.Connection[Any]:
        """BEGIN and take the lock; a connection found broken here (the server restarted since the
        last call) is replaced once: nothing was done yet."""
        conn = self._live()
        try:
            return self._locked(conn)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
        return self._locked(self._live())

    def _locked(self, conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        except psycopg.OperationalError:
            if not conn.broken:  # the lock timed out: end the transaction, report it
                conn.execute("ROLLBACK")
            raise
        self._in_tx = True
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
