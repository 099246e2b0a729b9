"""kill -9 of `bbnet meter run` under concurrent load: every call still ends as exactly one usage row.

The meter writes its commits and releases as group commits (meter/writes.py), and its SQLite
connection leaves WAL checkpoints to a thread (bbnet/checkpoint.py), so at the kill some writes may
sit queued, some only in the WAL, and calls hold reservations mid-answer. Twelve official openai SDK
clients (JSON and streamed calls) go through the real mitmproxy over TLS to the simulator until the
kill. Afterwards the leases the dead meter left are billed as lost calls, as the controller does
once they expire, and the ledger must hold one row per call the simulator answered (and per call
reserved and not yet forwarded), no hold, and pools equal to the rows.

Both ways a meter admits calls: from its stake (the default: the calls in flight are in its journal,
bbnet/stakes.py, and the dead meter's stake settles at once, its journal's lock being free) and
with a reservation row per call (``stakes: false``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget
from bbnet.names import Scope
from meter.sim import SimHandle, start_sim
from tests.meter.e2e import http_client, launch_proxy, wait_for, wait_ready

ADDRESS = "127.0.0.97"
CLIENTS = 12
ROWS_BEFORE_KILL = 150


@pytest.fixture
def own_sim() -> Iterator[SimHandle]:
    """A simulator of this test's own: its request count is this test's."""
    with start_sim(chunk_delay_ms=2) as handle:
        yield handle


@pytest.mark.parametrize("stakes", [True, False], ids=["stake", "rows"])
def test_kill_9_under_load_leaves_one_usage_row_per_call(
    tmp_path: Path, own_sim: SimHandle, stakes: bool
) -> None:
    db = tmp_path / "ledger.db"
    with Ledger.open(db) as ledger:
        ledger.add_bottle(Bottle("killed", addresses=(f"{ADDRESS}/32",)))
        ledger.set_budget(Budget(Scope.of_bottle("killed"), "*", "tokens", 10**12))
    settings = f"fail_open: false\nstakes: {str(stakes).lower()}\n"
    proxy = launch_proxy(tmp_path / "meter", db, [f"*={own_sim.url}"], settings_text=settings)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []  # (input, output) of each call a client saw complete
    lock = threading.Lock()

    def calls(n: int) -> None:
        with openai.OpenAI(
            api_key="sk-test-kill", http_client=http_client(proxy, ADDRESS), max_retries=0
        ) as gpt:
            i = 0
            while not stop.is_set():
                i += 1
                messages: list[ChatCompletionMessageParam] = [
                    {"role": "user", "content": f"client {n} call {i}: say something"}
                ]
                try:
                    if i % 2:
                        done = gpt.chat.completions.create(model="gpt-sim", max_tokens=16, messages=messages)
                        usage = done.usage
                    else:
                        stream = gpt.chat.completions.create(
                            model="gpt-sim", max_tokens=16, messages=messages, stream=True,
                            stream_options={"include_usage": True},
                        )  # fmt: skip
                        usage = next((c.usage for c in stream if c.usage is not None), None)
                except (openai.APIConnectionError, openai.APIStatusError):
                    return  # the meter is gone
                assert usage is not None
                with lock:
                    seen.append((usage.prompt_tokens, usage.completion_tokens))

    try:
        wait_ready(proxy)
        threads = [threading.Thread(target=calls, args=(n,), daemon=True) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        with Ledger.open(db) as reader:
            assert wait_for(lambda: len(reader.usage(limit=10**6)) >= ROWS_BEFORE_KILL, timeout=180)
        proxy.process.kill()  # SIGKILL: no shutdown code runs
        proxy.process.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    finally:
        stop.set()
        proxy.stop()

    forwarded = own_sim.stats()["total"]
    with Ledger.open(db) as ledger:
        in_flight = ledger.reservations()
        held = {str(r["key"]) for r in in_flight}
        assert {r["stake"] is not None for r in in_flight} <= {stakes}
        assert len(ledger.stakes()) == int(stakes)
        # the leases the dead meter left, expired; a stake's journal lock is free already
        billed = ledger.sweep_expired(now=None if stakes else time.time() + 10**6)
        assert {result.key for _, result in billed} == held and all(r.recorded for _, r in billed)
        rows = ledger.usage(limit=10**6)
        [pool] = ledger.pools()
        assert not ledger.reservations() and not ledger.stakes()
    assert len({r["key"] for r in rows}) == len(rows)
    # every forwarded call is a row; a call reserved but not yet forwarded at the kill is one too
    assert forwarded <= len(rows) <= forwarded + CLIENTS
    # an answer written to the socket just before the kill, its row committed, can still be lost to
    # the client: the dead proxy's socket is reset (it held the client's next request unread) and
    # the client's kernel drops what it had not read yet; at most one such answer per client
    assert ROWS_BEFORE_KILL - CLIENTS <= len(seen) <= len(rows)
    lost = [r for r in rows if r["lost"]]
    assert all(r["estimated"] for r in lost)
    # each call the SDK saw complete is its measured row, or a lost one (its commit died queued)
    measured = Counter((r["input_tokens"], r["output_tokens"]) for r in rows if not r["lost"])
    assert (Counter(seen) - measured).total() <= len(lost)
    assert (pool.used, pool.reserved) == (sum(r["input_tokens"] + r["output_tokens"] for r in rows), 0)
