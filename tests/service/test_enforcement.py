"""`bbnet serve` enforces budgets by itself: two bottles run official-SDK agent loops through the
meter; A's small budget runs out and the controller applies A's policy (cutoff, freeze or kill) at
once, in the kernel, while B keeps working; `bbnet restore` brings A back.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.harness import (
    Agent,
    BottleInfo,
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

# every call: ~160 input tokens + 16 output (the simulator's default), so this runs out in a few calls
SMALL_BUDGET = "anthropic=1200"
LOOP = (
    "--calls",
    "400",
    "--interval",
    "0.05",
    "--max-tokens",
    "64",
    "--stream-every",
    "2",
    "--timeout",
    "1",
    "--read-timeout",  # a call in flight at the cut waits this long: its bottle never sees the reset
    "10",
    "--give-up-after",
    "2",
)


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP listener on every host address: a bottle may not reach it except through the meter."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def desired(svc: Service, name: str) -> str:
    with svc.ledger() as ledger:
        return ledger.desired_state(name).state


def enforced_action(svc: Service, name: str, action: str, agent: Agent) -> dict[str, object]:
    """The controller's audit row for ``action`` on ``name``: the governing pool and its timing.

    The pool is spent when a commit takes it to its limit, or when a DENY finds that real usage
    leaves less than the next call needs: then what is left is less than one of A's calls."""
    rows = eventually(
        lambda: [a for a in actions(svc, name, action) if a.actor == "controller"],
        10,
        f"an actions row for {action} {name}",
    )  # written once the kernel is done
    assert len(rows) == 1, rows
    assert rows[0].result == "ok"
    assert rows[0].reason.startswith("budget exhausted: bottle:")
    detail = json.loads(rows[0].detail or "{}")
    assert detail["scope"] == f"bottle:{name}" and detail["provider"] == "anthropic"
    call = agent.outcomes("ok")[-1]
    assert detail["limit"] - detail["used"] < call["input_tokens"] + call["output_tokens"], detail
    return dict(detail)


def keeps_working(b: BottleInfo, agent_b: Agent, since: int) -> None:
    """B's agent gets more answers after A was stopped: it was not caught in A's enforcement."""
    assert b.veth not in cut_in_kernel()
    eventually(lambda: len(agent_b.outcomes("ok")) >= since + 3, 20, "bottle B keeps getting answers")
    assert not agent_b.outcomes("error") and not agent_b.outcomes("denied"), agent_b.lines[-3:]


def restore_with_budget(svc: Service, bottle: BottleInfo) -> None:
    """More budget first (else the next call cuts A again), then `bbnet restore`; a call succeeds."""
    svc.ok("budget", "set", f"bottle:{bottle.name}", "anthropic", "1M")
    svc.ok("restore", bottle.name, "--reason", "more budget")
    assert desired(svc, bottle.name) == "open"
    assert bottle.veth not in cut_in_kernel()


def start_pair(
    svc: Service, agents: list[Agent], prefix: str, policy: str
) -> tuple[BottleInfo, BottleInfo, Agent, Agent]:
    a = create_bottle(svc, f"{prefix}a", "--policy", policy, "--budget", SMALL_BUDGET)
    b = create_bottle(svc, f"{prefix}b", "--budget", "openai=10M")
    assert probe(svc, a, "tcp", str(a.proxy.address), str(a.proxy.port))["connected"]
    agents += [start_agent(svc, a, "anthropic", *LOOP), start_agent(svc, b, "openai", *LOOP)]
    return a, b, agents[-2], agents[-1]


def test_cutoff(service: Service, agents: list[Agent], listener: int) -> None:
    a, b, agent_a, agent_b = start_pair(service, agents, "cut", "cutoff")
    eventually(lambda: desired(service, a.name) == "cutoff", 30, "the controller cuts A off")
    assert a.veth in cut_in_kernel()
    detail = enforced_action(service, a.name, "cutoff", agent_a)
    assert float(str(detail["noticed_to_applied_ms"])) > 0  # audited; how fast is bench/service_bench.py
    ok_before_cut = len(agent_b.outcomes("ok"))

    # from inside A: the meter's port and any other host port are dropped in the kernel
    host = str(a.proxy.address)
    for port in (a.proxy.port, listener):
        reached = probe(service, a, "tcp", host, str(port))
        assert not reached["connected"] and "timed out" in reached["error"], reached
    lines = run_agent(service, a, "anthropic", "--calls", "1", "--timeout", "1")
    assert [line["outcome"] for line in lines] == ["error"], lines
    agent_a.wait(120)  # A's own loop gives up: its connections fail

    keeps_working(b, agent_b, ok_before_cut)

    restore_with_budget(service, a)
    lines = run_agent(service, a, "anthropic", "--calls", "2")
    assert [line["outcome"] for line in lines] == ["ok", "ok"], lines


def cgroup_frozen(bottle: BottleInfo) -> bool:
    return "frozen 1" in (Path(bottle.cgroup) / "cgroup.events").read_text()


def test_freeze(service: Service, agents: list[Agent]) -> None:
    a, b, agent_a, agent_b = start_pair(service, agents, "frz", "freeze")
    eventually(lambda: desired(service, a.name) == "frozen", 30, "the controller freezes A")
    enforced_action(service, a.name, "freeze", agent_a)
    assert cgroup_frozen(a) and a.veth in cut_in_kernel()
    ok_before = len(agent_b.outcomes("ok"))

    # A's processes stop where they are: alive, but no call finishes, not even with an error
    seen = len(agent_a.lines)
    time.sleep(1.0)
    assert agent_a.process.poll() is None
    assert len(agent_a.lines) == seen
    keeps_working(b, agent_b, ok_before)

    restore_with_budget(service, a)
    assert not cgroup_frozen(a)
    eventually(lambda: agent_a.outcomes("ok")[-1]["i"] > seen, 20, "A's loop resumes and gets answers")


def test_kill(service: Service, agents: list[Agent]) -> None:
    a, b, agent_a, agent_b = start_pair(service, agents, "kil", "kill")
    eventually(lambda: desired(service, a.name) == "killed", 30, "the controller kills A")
    enforced_action(service, a.name, "kill", agent_a)
    ok_before = len(agent_b.outcomes("ok"))

    # no process remains; what bbnet made for A is gone; its history stays
    assert agent_a.wait(10) == -9
    assert not Path(a.cgroup).exists()
    assert not Path(f"/run/netns/{a.netns}").exists()
    link = subprocess.run(["ip", "link", "show", a.veth], capture_output=True, text=True, check=False)
    assert link.returncode != 0
    with service.ledger() as ledger:
        assert ledger.get_bottle(a.name) is not None
        assert len(ledger.usage(bottle=a.name)) == len(agent_a.outcomes("ok"))
    keeps_working(b, agent_b, ok_before)
