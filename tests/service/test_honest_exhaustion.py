"""`bbnet serve` tells a call too big for what is left from a budget that is spent: a bottle with
room left is answered 429 with what the call needed and what remains, and stays on the network; a
bottle whose remaining budget is less than its smallest recent call is cut off, and the audit row
says so.
"""

from __future__ import annotations

import json

import pytest

from tests.service.harness import (
    Agent,
    Service,
    actions,
    create_bottle,
    cut_in_kernel,
    eventually,
    probe,
    run_agent,
    start_agent,
)

pytestmark = pytest.mark.root

ONE_CALL = ("--calls", "1", "--stream-every", "0", "--timeout", "5")


def desired(svc: Service, name: str) -> str:
    with svc.ledger() as ledger:
        return ledger.desired_state(name).state


def test_oversized_call_is_denied_honestly_and_only_a_spent_bottle_is_cut(
    service: Service, agents: list[Agent]
) -> None:
    roomy = create_bottle(service, "roomy", "--policy", "cutoff", "--budget", "anthropic=3000")
    spent = create_bottle(service, "spent", "--policy", "cutoff", "--budget", "anthropic=300")

    # roomy makes two ordinary calls, then one whose input alone is larger than what is left
    for _ in range(2):
        assert [
            line["outcome"] for line in run_agent(service, roomy, "anthropic", *ONE_CALL, timeout=180)
        ] == ["ok"]
    big = probe(service, roomy, "big", roomy.proxy_url, service.ca, "40000")
    assert big["status"] == 429, big
    err = big["error"]
    assert err["bbnet_code"] == "BUDGET_DENIED" and err["bbnet_reason"] == "call_exceeds_remaining", err
    assert err["needed"] > err["remaining"] > 0, err
    assert err["remaining"] == err["limit"] - err["used"] - err["reserved"], err
    message = err["error"]["message"]
    assert f"needs ~{err['needed']:,} tokens, {err['remaining']:,} remain in bottle:roomy" in message, message

    # spent: ordinary calls until what is left is less than its smallest call, then a DENY
    agent = start_agent(service, spent, "anthropic", "--calls", "400", "--interval", "0.05", "--stream-every",
                        "0", "--timeout", "5", "--give-up-after", "1")  # fmt: skip
    agents.append(agent)
    eventually(lambda: desired(service, spent.name) == "cutoff", 60, "the controller cuts spent off")
    eventually(lambda: spent.veth in cut_in_kernel(), 30, "spent's veth in the kernel's cutoff set")
    eventually(lambda: agent.outcomes("denied"), 30, "the call that found too little left refused")
    rows = eventually(lambda: actions(service, spent.name, "cutoff"), 10, "the cutoff's audit row")
    with service.ledger() as ledger:
        usage = ledger.usage(bottle=spent.name)
        pool = next(p for p in ledger.pools() if p.scope == "bottle:spent")
    smallest = min(u["input_tokens"] + u["output_tokens"] for u in usage if not u["estimated"])
    assert pool.used < pool.limit and pool.limit - pool.used < smallest, (pool, usage)
    assert rows[0].reason == (
        f"budget exhausted: bottle:spent anthropic used {pool.used} of {pool.limit} tokens (total); "
        f"its smallest recent call needs {smallest:,}"
    ), rows[0].reason
    assert json.loads(rows[0].detail)["smallest_recent_call"] == smallest

    # the controller handles the meter's notices in order: roomy's came first and did not cut it
    assert desired(service, roomy.name) == "open"
    assert not actions(service, roomy.name, "cutoff")
    assert roomy.veth not in cut_in_kernel()
    assert [line["outcome"] for line in run_agent(service, roomy, "anthropic", *ONE_CALL, timeout=180)] == [
        "ok"
    ]
