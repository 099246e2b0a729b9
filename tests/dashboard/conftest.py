"""Fixtures for the dashboard tests: a ledger file seeded with fixed times, and the app over it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, UsageRecord
from bbnet.names import Scope
from dashboard.app import Dashboard
from dashboard.widgets import BottleTable

T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC: every seeded timestamp is relative to this
NOW = T0 + 3600  # the app's clock in deterministic tests


def seed(ledger: Ledger) -> None:
    """Four bottles (two nested under ``team``), budgets, an hour of calls, one cutoff."""
    ledger.add_bottle(Bottle("team"))
    for i, name in enumerate(("ta", "tb")):
        ledger.add_bottle(
            Bottle(name, parent="team", veth=f"bb-{name}", addresses=(f"10.243.0.{4 * i + 2}/30",))
        )
    ledger.add_bottle(Bottle("solo", veth="bb-solo", addresses=("10.243.0.10/30",), policy="freeze"))
    ledger.set_budget(Budget(Scope.global_(), "anthropic", "tokens", 5_000_000))
    ledger.set_budget(Budget(Scope.of_bottle("team"), "*", "tokens", 100_000))
    ledger.set_budget(Budget(Scope.of_bottle("ta"), "anthropic", "tokens", 20_000))
    ledger.set_budget(Budget(Scope.of_bottle("tb"), "openai", "usd", 2_000_000, "day"))
    for k in range(40):
        bottle, provider, model = (
            ("ta", "anthropic", "claude-sonnet-4-5") if k % 2 else ("tb", "openai", "gpt-4o")
        )
        ledger.commit(
            f"seed-{k}",
            UsageRecord(
                bottle, "main", provider, model, input_tokens=300, output_tokens=200,
                ts=T0 + 60 * k, status=200, latency_ms=120.0,
            ),
        )  # fmt: skip
    ledger.set_desired_state("tb", "cutoff", "budget exhausted", "controller")
    ledger.record_action("tb", "cutoff", "controller", "budget exhausted", "ok", 1.2)


@pytest.fixture
def utc() -> Iterator[None]:
    """Wall-clock times on screen in UTC, whatever the machine's zone."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, utc: None) -> Path:
    """A seeded ledger whose every timestamp (actions and states too) is fixed."""
    path = tmp_path / "ledger.db"
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: T0 + 2400)  # what the ledger stamps actions and states with
        with Ledger.open(path) as ledger:
            seed(ledger)
    return path


@pytest.fixture
def app_ledger(seeded: Path) -> Iterator[Ledger]:
    """The dashboard's own connection (tests write through a second one)."""
    with Ledger.open(seeded, create=False) as ledger:
        yield ledger


@pytest.fixture
def writer(seeded: Path) -> Iterator[Ledger]:
    """A second connection: what the meter or the controller would be."""
    with Ledger.open(seeded, create=False) as ledger:
        yield ledger


def fixed_app(ledger: Ledger) -> Dashboard:
    return Dashboard(ledger, clock=lambda: NOW, actor="operator:test")


def cell(app: Dashboard, bottle: str, column: str) -> str:
    return app.query_one(BottleTable).get_cell(bottle, column).plain
