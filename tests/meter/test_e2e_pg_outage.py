"""End to end: `bbnet meter run` on a PostgreSQL ledger whose server goes away mid-call and comes
back. Real mitmproxy, the official openai SDK over TLS, the simulator, a real PostgreSQL server
stopped and started again.

A call in flight when the server stops still reaches the client whole, and its commit lands once the
server is back (the meter's journal), as exactly one usage row; calls made while it is down are
answered 503 BUDGET_CONFIG (fail-closed), or forwarded unmetered by a fail-open meter; a meter
started while the server is down answers 503 until it is up, then meters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from bbnet.ledger import Ledger, LedgerUnreachable
from bbnet.model import Bottle, Budget
from bbnet.names import Scope
from meter.sim import SimHandle
from tests import pgserver
from tests.conftest import need_pg
from tests.meter.e2e import MeterProxy, http_client, launch_proxy, running_proxies, wait_for

SLOW_HOST = "api.groq.com"  # an OpenAI-compatible host the proxies send to the slow simulator
PROMPT = "Say something about budgets."


@pytest.fixture(scope="module")
def server() -> Iterator[pgserver.PgServer]:
    need_pg()
    with pgserver.running() as srv:
        yield srv


@pytest.fixture(scope="module")
def url(server: pgserver.PgServer) -> str:
    return server.new_database()


@pytest.fixture(scope="module")
def ledger(url: str) -> Iterator[Ledger]:
    with Ledger.open(url) as opened:
        yield opened


def _launch(workdir: Path, url: str, sim: SimHandle, slow_sim: SimHandle, **env: str) -> MeterProxy:
    return launch_proxy(workdir, url, [f"{SLOW_HOST}={slow_sim.url}", f"*={sim.url}"], env)


def settled(call: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``call()``'s truthy value once the ledger answers (this test's own connection reconnects too)."""

    def probe() -> Any:
        try:
            return call()
        except LedgerUnreachable:
            return None

    return wait_for(probe, timeout=timeout, interval=0.1)


def gpt(proxy: MeterProxy, address: str, base_url: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-pg", base_url=base_url, http_client=http_client(proxy, address),
                         max_retries=0)  # fmt: skip


def ask(client: openai.OpenAI) -> str:
    done = client.chat.completions.create(
        model="gpt-sim", max_tokens=12, messages=[{"role": "user", "content": PROMPT}]
    )
    return done.choices[0].message.content or ""  # fmt: skip


def test_outage_mid_stream_commits_once_when_the_server_is_back(
    tmp_path: Path, server: pgserver.PgServer, url: str, ledger: Ledger, sim: SimHandle, slow_sim: SimHandle
) -> None:
    bottle = ledger.add_bottle(Bottle("pg-stream", addresses=("127.0.0.61/32",)))
    ledger.set_budget(Budget(Scope.of_bottle(bottle.name), "*", "tokens", 100_000))
    address = "127.0.0.61"
    closed = _launch(tmp_path / "closed", url, sim, slow_sim)
    fail_open = _launch(tmp_path / "open", url, sim, slow_sim, BBNET_FAIL_OPEN="1")
    with running_proxies(closed, fail_open):
        with gpt(closed, address, base_url=f"https://{SLOW_HOST}/openai/v1") as client:
            stream = client.chat.completions.create(
                model="llama-sim", messages=[{"role": "user", "content": PROMPT}], stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            chunks = iter(stream)
            first = next(chunks)
            assert first.choices and len(ledger.reservations()) == 1  # mid-stream: the call holds
            server.stop()
            rest = list(chunks)  # the answer still streams to the end
        text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
        reported = next(c.usage for c in reversed(rest) if c.usage is not None)
        assert text and reported.completion_tokens > 0
        time.sleep(0.5)  # the commit is tried (and journalled) just after the stream ends
        with gpt(closed, address) as client, pytest.raises(openai.InternalServerError) as caught:
            ask(client)  # fail-closed while the server is down
        assert caught.value.status_code == 503
        body = caught.value.response.json()
        assert body["bbnet_code"] == "BUDGET_CONFIG" and "unreachable" in body["error"]["message"]
        assert server.password not in caught.value.response.text
        before = sim.stats()["total"]
        with gpt(fail_open, address) as client:
            assert ask(client)  # fail-open: forwarded, unmetered
        assert sim.stats()["total"] == before + 1
        server.start()
        rows = settled(lambda: ledger.usage(bottle=bottle.name))
        assert len(rows) == 1, rows  # the journalled commit, once
        row = rows[0]
        assert (row["output_tokens"], row["estimated"], row["stream"]) == (reported.completion_tokens, 0, 1)
        assert settled(lambda: ledger.reservations() == [])
        [pool] = ledger.pools()
        assert (pool.used, pool.reserved) == (row["input_tokens"] + row["output_tokens"], 0)
        with gpt(closed, address) as client:
            assert ask(client)  # metered again
        assert wait_for(lambda: len(ledger.usage(bottle=bottle.name)) == 2)
        time.sleep(1.5)  # a replay has had its chance to write anything twice
        assert len(ledger.usage(bottle=bottle.name)) == 2
    logs = closed.stderr() + fail_open.stderr()
    assert "waits for the ledger" in logs and "journalled writes replayed" in closed.stderr()
    assert server.password not in logs


def test_meter_started_while_the_server_is_down(
    tmp_path: Path, server: pgserver.PgServer, url: str, ledger: Ledger, sim: SimHandle, slow_sim: SimHandle
) -> None:
    ledger.add_bottle(Bottle("pg-late", addresses=("127.0.0.62/32",)))
    server.stop()
    try:
        late = _launch(tmp_path / "late", url, sim, slow_sim)
        with running_proxies(late):
            with gpt(late, "127.0.0.62") as client, pytest.raises(openai.InternalServerError) as caught:
                ask(client)
            assert caught.value.response.json()["bbnet_code"] == "BUDGET_CONFIG"
            server.start()

            def metered() -> bool:
                with gpt(late, "127.0.0.62") as client:
                    try:
                        return bool(ask(client))
                    except openai.InternalServerError:
                        return False

            assert wait_for(metered, timeout=30, interval=0.2)
            assert settled(lambda: len(ledger.usage(bottle="pg-late")) == 1)
        assert server.password not in late.stderr()
    finally:
        if server.postmaster.proc is None:
            server.start()
