"""PostgreSQL going away and coming back, and bad URLs: a real server, stopped and started again."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from bbnet.ledger import Ledger, LedgerError, LedgerUnreachable
from bbnet.model import Bottle, Budget, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.schema import SCHEMA_VERSION
from tests import pgserver
from tests.conftest import need_pg, run_bbnet


@pytest.fixture
def server() -> Iterator[pgserver.PgServer]:
    """A server of this test's own: it is stopped mid-test."""
    need_pg()
    with pgserver.running() as srv:
        yield srv


def eventually[T](call: Callable[[], T], timeout: float = 30.0) -> T:
    """``call()`` once the ledger answers again (a reconnect waits out the retry interval)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except LedgerUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _req(key: str) -> ReserveRequest:
    return ReserveRequest(key, "a", "agent1", "anthropic", "m", 100, 100)


def _usage() -> UsageRecord:
    return UsageRecord("a", "agent1", "anthropic", "m", input_tokens=100, output_tokens=40)


def test_outage_mid_call_then_commit_lands_once(server: pgserver.PgServer) -> None:
    url = server.new_database()
    with Ledger.open(url) as ledger:
        ledger.add_bottle(Bottle("a"))
        ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000))
        ledger.reserve(_req("k1"))
        server.stop()
        with pytest.raises(LedgerUnreachable, match="unreachable"):
            ledger.commit("k1", _usage())
        with pytest.raises(LedgerUnreachable):
            ledger.reserve(_req("k2"))
        with pytest.raises(LedgerUnreachable):
            ledger.data_version()
        server.start()
        assert eventually(lambda: ledger.commit("k1", _usage())).recorded
        assert not ledger.commit("k1", _usage()).recorded  # a replay of a commit that landed: no-op
        [pool] = ledger.pools()
        assert (pool.used, pool.reserved) == (140, 0)
        assert [r["key"] for r in ledger.usage()] == ["k1"]
        assert ledger.reservations() == []


def test_a_server_restart_between_calls_is_invisible(server: pgserver.PgServer) -> None:
    """A connection the restart broke is replaced on the next call, which then succeeds."""
    url = server.new_database()
    with Ledger.open(url) as ledger:
        ledger.add_bottle(Bottle("a"))
        server.stop()
        server.start()
        assert [b.name for b in ledger.bottles()] == ["a"]  # a read
        server.stop()
        server.start()
        ledger.reserve(_req("k"))  # a write
        assert [r["key"] for r in ledger.reservations()] == ["k"]


def test_lazy_open_while_down_migrates_when_the_server_answers(server: pgserver.PgServer) -> None:
    url = server.new_database()
    server.stop()
    with pytest.raises(LedgerUnreachable, match="cannot open ledger"):
        Ledger.open(url)
    with Ledger.open(url, lazy=True) as ledger:
        with pytest.raises(LedgerUnreachable):
            ledger.bottles()
        server.start()
        assert eventually(ledger.bottles) == []
        assert ledger.schema_version() == SCHEMA_VERSION


def test_wrong_password_or_database_is_one_line_without_the_password(
    pg_server: pgserver.PgServer, pg_url: str
) -> None:
    secret = secrets.token_urlsafe(12)  # never printed, whatever fails
    wrong = pg_server.url(pg_url.rsplit("/", 1)[1], password=secret)
    with pytest.raises(LedgerError, match="password authentication failed") as caught:
        Ledger.open(wrong, lazy=True)  # refused, not unreachable: lazy does not hide it
    assert not isinstance(caught.value, LedgerUnreachable)
    for url, expected in (
        (wrong, "password authentication failed"),
        (pg_server.url("no_such_db"), 'database "no_such_db" does not exist'),
        (f"postgresql://bbnet:{secret}@127.0.0.1:1/x", "Connection refused"),
    ):
        r = run_bbnet("ledger", "info", "--db", url)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bbnet ledger info: error: cannot open ledger at")
        assert expected in lines[0]
        assert secret not in r.stderr and pg_server.password not in r.stderr + r.stdout
        assert ":***@" in lines[0]


def test_ledger_info_on_postgresql(pg_url: str) -> None:
    Ledger.open(pg_url).close()
    r = run_bbnet("ledger", "info", "--db", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    assert pg_url.split("@")[0].split(":")[-1] not in r.stdout  # the password
    assert f'"schema_version": {SCHEMA_VERSION}' in r.stdout
