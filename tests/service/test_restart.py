"""SIGKILL `bbnet serve` while agents stream through it, and start it again: the cutoffs are back
in the kernel, and the ledger has exactly one usage row for each call an agent saw complete, and one
for each call the kill broke: its expired lease is billed as a lost call (estimated, from the
reservation), since it was forwarded and may have been billed upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bbnet.model import PoolView
from meter.sim import start_sim
from tests.service.harness import (
    Agent,
    Service,
    create_bottle,
    cut_in_kernel,
    eventually,
    remove_table,
    start_agent,
)

pytestmark = pytest.mark.root

# The agents call until the test stops them, through however long the service takes to come back
LOOP = ("--calls", "1000000", "--max-tokens", "64", "--stream-every", "1", "--interval", "0.05",
        "--timeout", "2", "--give-up-after", "1000000")  # fmt: skip


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """Slow streams (16 chunks, 10 ms apart): a kill almost always finds calls in flight."""
    with start_sim(chunk_delay_ms=10) as handle:
        yield handle.url


def reservations(svc: Service) -> list[dict[str, object]]:
    with svc.ledger() as ledger:
        return ledger.reservations()


def fresh_reservation(svc: Service) -> bool:
    """A call is in flight and far from its end (its stream takes ~160 ms)."""
    return any(time.time() - float(r["created_at"]) < 0.05 for r in reservations(svc))  # type: ignore[arg-type]


def recovered(agent: Agent) -> bool:
    """A call failed (the kill) and a later one succeeded (the restart)."""
    failed = [line["i"] for line in agent.outcomes("error")]
    ok = agent.outcomes("ok")
    return bool(failed) and bool(ok) and ok[-1]["i"] > max(failed)


def test_sigkill_mid_stream_then_restart(service: Service, agents: list[Agent]) -> None:
    cut = create_bottle(service, "rscut")
    busy = create_bottle(service, "rsbusy", "--budget", "openai=10M")
    service.ok("cutoff", cut.name, "--reason", "before the crash")
    stop = service.workdir / "agents-stop"
    agents += [start_agent(service, busy, "openai", *LOOP, "--stop-file", str(stop)) for _ in range(2)]
    eventually(lambda: all(len(a.outcomes("ok")) >= 3 for a in agents), 30, "both agents get answers")

    eventually(lambda: fresh_reservation(service), 60, "a call in flight")
    service.kill()
    held = reservations(service)
    assert held, "the kill found no call in flight"
    remove_table()  # as after a reboot: the kernel forgot, the ledger did not
    assert cut.veth not in cut_in_kernel()

    service.start()
    eventually(lambda: cut.veth in cut_in_kernel(), 30, "the cutoff is back in the kernel")
    eventually(lambda: not reservations(service), 30, "the dead meter's leases are billed as lost calls")
    eventually(lambda: all(recovered(a) for a in agents), 120, "calls fail at the kill, then succeed again")
    stop.touch()  # each agent ends after the call it is making: every ok line is a finished call
    for agent in agents:
        assert agent.wait(60) == 0

    with service.ledger() as ledger:
        rows = ledger.usage(bottle=busy.name, limit=100000)

        def settled() -> PoolView | None:  # an idle meter gives its stake's free room back within a second
            pool = next(p for p in ledger.pools() if p.scope == f"bottle:{busy.name}")
            return pool if pool.reserved == 0 else None

        pool = eventually(settled, 10, "nothing held once the agents are done")
        assert pool is not None
    ok = [line for a in agents for line in a.outcomes("ok")]
    assert len(ok) > len(agents) * 3  # calls completed before the kill and after the restart
    assert len({r["key"] for r in rows}) == len(rows)  # one usage row per call, ever
    lost = [r for r in rows if r["lost"]]
    billed = [r for r in rows if not r["lost"]]
    # the calls the kill broke: one lost row per held key, of the input estimate and the output
    # seen that the lease kept
    assert sorted(r["key"] for r in lost) == sorted(str(r["key"]) for r in held)
    assert {r["key"]: (r["input_tokens"], r["output_tokens"], r["estimated"]) for r in lost} == {
        str(r["key"]): (r["input_tokens"], r["output_seen"], 1) for r in held
    }
    assert sorted((r["input_tokens"], r["output_tokens"]) for r in billed) == sorted(
        (line["input_tokens"], line["output_tokens"]) for line in ok
    )
    assert pool.used == sum(r["input_tokens"] + r["output_tokens"] for r in rows) and pool.reserved == 0
