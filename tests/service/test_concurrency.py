"""Four agents in one bottle stream calls at once against one budget, through `bbnet serve`.

With ``max_tokens`` on every request the reservation holds the worst case, so committed usage
never passes the limit. Without it the gate reserves the model's output cap, lowered to what the
pools can pay for (DEGRADE): the limit holds too (overshoot 0), but the first call in flight holds
all that is left, so the calls beside it are denied while most of the budget is unused (printed
with ``-s``; measured here: 6 of 60 calls answered, 654 of 3000 tokens used).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.harness import Agent, BottleInfo, Service, create_bottle, probe, start_agent

pytestmark = pytest.mark.root

LIMIT = 3000


def committed(svc: Service, bottle: str) -> tuple[int, int, list[dict[str, Any]]]:
    """The bottle pool's ``used`` and ``reserved``, and the bottle's usage rows."""
    with svc.ledger() as ledger:
        pool = next(p for p in ledger.pools() if p.scope == f"bottle:{bottle}")
        return pool.used, pool.reserved, ledger.usage(bottle=bottle, limit=100000)


def tokens(rows: list[dict[str, Any]]) -> int:
    return sum(r["input_tokens"] + r["output_tokens"] + r["cache_write_tokens"] + r["cache_read_tokens"]
               for r in rows)  # fmt: skip


def enforced(svc: Service, bottle: BottleInfo) -> bool:
    with svc.ledger() as ledger:
        return ledger.desired_state(bottle.name).state == "cutoff"


def test_four_streaming_agents_with_max_tokens_stay_within_the_limit(
    service: Service, agents: list[Agent]
) -> None:
    bottle = create_bottle(service, "conc", "--budget", f"openai={LIMIT}")
    loop = (
        "--calls",
        "60",
        "--max-tokens",
        "64",
        "--stream-every",
        "1",
        "--timeout",
        "1",
        "--give-up-after",
        "1",
    )
    agents += [start_agent(service, bottle, "openai", *loop) for _ in range(4)]
    for agent in agents:  # a call in flight at the cut waits out its read timeout (10 s)
        agent.wait(120)
    used, reserved, rows = committed(service, bottle.name)
    ok = sum(len(a.outcomes("ok")) for a in agents)
    assert ok == len(rows) > 4  # every agent's answers, each metered once
    assert used == tokens(rows) <= LIMIT
    assert LIMIT - used < 200  # the budget was spent, not left unused by over-eager denials
    assert reserved == 0
    assert enforced(service, bottle)


def test_four_streams_without_max_tokens_stay_within_the_limit(service: Service) -> None:
    bottle = create_bottle(service, "nocap", "--budget", f"openai={LIMIT}")
    counts = probe(service, bottle, "nocap", bottle.proxy_url, service.ca, "4", "15")
    used, reserved, rows = committed(service, bottle.name)
    print(f"\nwithout max_tokens: {counts}; used {used} of {LIMIT} (overshoot {max(used - LIMIT, 0)})")
    # Without max_tokens each call holds the model's whole output cap, so calls beside it are refused
    # (fail-closed): few succeed, but every success is one row and nothing overshoots.
    assert counts["ok"] == len(rows) >= 1
    assert used == tokens(rows) <= LIMIT
    assert reserved == 0
