"""A live meter keeps the leases of its calls alive: a stream that outlasts its lease (2 s here)
and the controller's sweeps (every 5 s) still ends as its real usage, not as a lost estimate; and
each renewal notes the output seen so far, which is what a meter that dies then gets billed for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meter.sim import start_sim
from tests.service.harness import Agent, Service, create_bottle, eventually, start_agent

pytestmark = pytest.mark.root

WORDS = 60  # one word (= one output token) per event…
CHUNK_DELAY_MS = 150  # …one event every 150 ms: a stream of about 9 s, past a lease and a sweep


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with start_sim(chunk_delay_ms=CHUNK_DELAY_MS, output_tokens=WORDS) as handle:
        yield handle.url


def test_a_call_longer_than_its_lease_is_billed_as_it_was(service: Service, agents: list[Agent]) -> None:
    bottle = create_bottle(service, "longcall")
    agent = start_agent(service, bottle, "anthropic", "--calls", "1", "--stream-every", "1",
                        "--max-tokens", "200", "--timeout", "120")  # fmt: skip
    agents.append(agent)
    with service.ledger() as ledger:  # each renewal also notes what the stream has shown so far
        eventually(lambda: any(r["output_seen"] > 0 for r in ledger.reservations()), 60,
                   "a renewed lease holds the output seen")  # fmt: skip
    assert agent.wait(300) == 0
    [ok] = agent.outcomes("ok")
    with service.ledger() as ledger:
        [row] = eventually(lambda: ledger.usage(bottle=bottle.name), 30, "the call is committed")
        assert not ledger.reservations()
    assert (row["lost"], row["estimated"], row["output_tokens"]) == (0, 0, WORDS)
    assert (row["input_tokens"], row["output_tokens"]) == (ok["input_tokens"], ok["output_tokens"])
