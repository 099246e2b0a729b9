"""A cutoff ends the calls a bottle has in flight: the meter settles them at once and stops the
upstream stream, instead of letting the provider finish (and bill) an answer nobody can receive."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from meter.sim import start_sim
from tests.service.harness import Agent, Service, actions, create_bottle, eventually, start_agent

pytestmark = pytest.mark.root

WORDS = 60  # the simulator's answer: one word (= one output token) per event…
CHUNK_DELAY_MS = 100  # …one event every 100 ms: a stream of about 6 s


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """This module's simulator streams slowly, so a cutoff lands in the middle of an answer."""
    with start_sim(chunk_delay_ms=CHUNK_DELAY_MS, output_tokens=WORDS) as handle:
        yield handle.url


def test_cutoff_settles_a_streaming_call_in_flight(service: Service, agents: list[Agent]) -> None:
    bottle = create_bottle(service, "flight", "--budget", "anthropic=10M")
    agent = start_agent(service, bottle, "anthropic", "--calls", "1", "--stream-every", "1",
                        "--max-tokens", "200", "--timeout", "30")  # fmt: skip
    agents.append(agent)
    with service.ledger() as ledger:
        eventually(lambda: any(r["bottle"] == bottle.name for r in ledger.reservations()), 30,
                   "the streamed call is in flight (held in the ledger)")  # fmt: skip
        time.sleep(1.0)  # some of the answer has gone by
        service.ok("cutoff", bottle.name, "--reason", "test: mid-stream")
        [row] = eventually(lambda: ledger.usage(bottle=bottle.name), 60, "the meter settles the call")
        assert not [r for r in ledger.reservations() if r["bottle"] == bottle.name]
    [cut_row] = actions(service, bottle.name, "cutoff")
    assert json.loads(cut_row.detail)["connections_closed"] >= 1, cut_row
    # settled before the stream ended, with what it had shown: the cut ended the call upstream too
    assert row["stream"] == 1 and row["output_tokens"] < WORDS, row
    assert agent.process.poll() is None or not agent.outcomes("ok")  # the agent never got its answer
