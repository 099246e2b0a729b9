"""The controller against a real bottle: budget enforcement and the new-period restore."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from bbnet.ledger import Ledger
from bbnet.model import Budget, UsageRecord
from bbnet.names import Scope
from bbnet.pools import period_start
from bbnet.settings import Settings
from enforcer.controller import Controller
from enforcer.nft import Nft

pytestmark = pytest.mark.root
MODEL = "claude-sonnet-4-5-20250929"


def _exhaust_yesterday(ledger: Ledger, name: str) -> float:
    """A day pool spent by a call yesterday; returns that call's time."""
    ledger.set_budget(Budget(Scope.of_bottle(name), "anthropic", "tokens", 1000, period="day"))
    yesterday = period_start("day", time.time()) - 3600
    result = ledger.commit(
        f"{name}-spend",
        UsageRecord(name, "coder", "anthropic", MODEL, input_tokens=900, output_tokens=100, ts=yesterday),
    )
    assert result.recorded and [p.scope for p in result.exhausted] == [f"bottle:{name}"]
    return yesterday


def _controller(ledger: Ledger, **settings: Any) -> Controller:
    return Controller(Ledger.open(ledger.path), Nft(), Settings(**settings), grace=0.0)


def test_commit_that_spends_a_pool_cuts_the_bottle_off(
    ledger: Ledger, make_bottle: Callable[..., str]
) -> None:
    name = make_bottle("ct")
    ledger.set_budget(Budget(Scope.of_bottle(name), "anthropic", "tokens", 500))
    controller = _controller(ledger)
    controller.start()
    try:
        result = ledger.commit(
            "k", UsageRecord(name, "coder", "anthropic", MODEL, input_tokens=400, output_tokens=100)
        )
        controller.notify_commit(name, result)  # the meter's wake-up
        deadline = time.monotonic() + 30
        while ledger.desired_state(name).state == "open" and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        controller.stop()
    assert ledger.desired_state(name).state == "cutoff"
    bottle = ledger.get_bottle(name)
    assert bottle is not None and bottle.veth is not None
    assert bottle.veth in Nft().cutoff_counters()
    [action] = [a for a in ledger.actions() if a.action == "cutoff"]
    assert action.actor == "controller" and f"bottle:{name}" in action.reason


def test_new_period_restores_only_when_asked(ledger: Ledger, make_bottle: Callable[..., str]) -> None:
    name = make_bottle("cr")
    _exhaust_yesterday(ledger, name)
    ledger.set_desired_state(name, "cutoff", f"budget exhausted: bottle:{name} anthropic ...", "controller")
    veth = ledger.get_bottle(name).veth  # type: ignore[union-attr]

    keep = _controller(ledger, auto_restore_on_new_period=False)
    keep.reconcile("test")
    assert veth in Nft().cutoff_counters()
    # the setting is off: a fresh day's pool does not silently restore the bottle
    assert ledger.desired_state(name).state == "cutoff"

    restore = _controller(ledger, auto_restore_on_new_period=True)
    restore.restore_new_periods()
    assert ledger.desired_state(name).state == "open"
    assert veth not in Nft().cutoff_counters()
    assert any(a.action == "restore" and a.reason == "new budget period" for a in ledger.actions())


def test_operator_cutoff_is_never_auto_restored(ledger: Ledger, make_bottle: Callable[..., str]) -> None:
    name = make_bottle("co")
    _exhaust_yesterday(ledger, name)
    ledger.set_desired_state(name, "cutoff", "runaway loop", "operator:root")
    controller = _controller(ledger, auto_restore_on_new_period=True)
    controller.reconcile("test")
    controller.restore_new_periods()
    assert ledger.desired_state(name).state == "cutoff"
