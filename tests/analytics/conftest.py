"""A ledger with known contents, written through the real Ledger API, and the calls that went in."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.prices import rates

# (provider, model); the last is unknown to genai-prices
MODELS = (
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("openai", "gpt-4o"),
    ("openai", "o3"),
    ("anthropic", "bbnet-test-unpriced"),
)
BOTTLES = (("alpha", None), ("beta", "alpha"), ("gamma", None))
AGENTS = ("planner", "coder")
NODES = ("host-a", "host-b")  # the hosts that metered the calls (a fleet's)


@dataclass(frozen=True)
class Built:
    path: Path | str  # a SQLite file or a PostgreSQL URL
    now: float
    calls: tuple[UsageRecord, ...]
    actions: tuple[tuple[str | None, str, str, str, str], ...]  # bottle, action, actor, reason, result
    reserved: dict[tuple[str, str, str], int]  # (scope, provider, unit) -> held amount


def _calls(now: float, rng: random.Random, count: int) -> list[UsageRecord]:
    calls = []
    for _ in range(count):
        provider, model = rng.choice(MODELS)
        bottle = rng.choice(BOTTLES)[0]
        cache_read = rng.choice((0, 0, rng.randrange(1, 3000)))
        cache_write = rng.choice((0, 0, rng.randrange(1, 2000))) if provider == "anthropic" else 0
        reasoning = rng.randrange(0, 500) if model == "o3" else 0
        output = reasoning + rng.randrange(1, 3000)
        calls.append(
            UsageRecord(
                bottle=bottle,
                agent=rng.choice(AGENTS),
                provider=provider,
                model=model,
                input_tokens=cache_read + cache_write + rng.randrange(1, 20000),
                output_tokens=output,
                cache_write_tokens=cache_write,
                cache_read_tokens=cache_read,
                reasoning_tokens=reasoning,
                estimated=rng.random() < 0.1,
                ts=now - rng.uniform(0, 3 * 86400),  # the last three days
                node=rng.choice(NODES),
            )
        )
    return calls


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("ledger") / "ledger.db")


def build(path: Path | str) -> Built:
    """The known ledger, written at ``path`` (a file, or a PostgreSQL URL)."""
    now = time.time()
    rng = random.Random(6)
    calls = _calls(now, rng, 400)
    actions = (
        ("beta", "cutoff", "controller", "budget exhausted: bottle:beta anthropic tokens", "ok"),
        ("gamma", "freeze", "operator:alice", "runaway loop", "ok"),
        ("beta", "restore", "cli", "budget raised", "ok"),
        (None, "drift-repair", "controller", "ruleset flushed", "error: nft: table busy"),
    )
    with Ledger.open(path) as ledger:
        for name, parent in BOTTLES:
            ledger.add_bottle(Bottle(name, parent=parent))
        budgets = (
            Budget(Scope.global_(), "*", "tokens", 50_000_000, "total"),
            Budget(Scope.global_(), "*", "usd", 500_000_000, "month"),
            Budget(Scope.of_bottle("alpha"), "anthropic", "tokens", 3_000_000, "day"),
            Budget(Scope.of_bottle("beta"), "*", "usd", 900_000_000, "week"),
            Budget(Scope.of_agent("gamma", "coder"), "openai", "tokens", 1_000, "total"),
        )
        for budget in budgets:
            ledger.set_budget(budget)
        for i, call in enumerate(calls):
            ledger.commit(f"call-{i}", call)
        lost = (("alpha", "claude-sonnet-4-5", 700), ("beta", "claude-haiku-4-5", 1200))
        for i, (name, model, inp) in enumerate(lost):  # their meter died: billed by the sweep
            ledger.reserve(ReserveRequest(f"lost-{i}", name, "coder", "anthropic", model, inp, 4000,
                                          rates("anthropic", model), lease_seconds=0.0))  # fmt: skip
        assert len(ledger.sweep_expired()) == len(lost)
        for row in ledger.usage(since_id=len(calls)):
            record = UsageRecord(row["bottle"], "coder", "anthropic", row["model"], input_tokens=row["input_tokens"],
                                 estimated=True, lost=True, ts=row["ts"], node=row["node"])  # fmt: skip
            calls.append(record)
        assert [(c.bottle, c.model, c.input_tokens) for c in calls[-len(lost) :]] == list(lost)
        held = ledger.reserve(
            ReserveRequest(
                "in-flight", "beta", "planner", "openai", "gpt-4o", 1000, 500, rates("openai", "gpt-4o")
            )
        )
        for bottle, kind, actor, reason, result in actions:
            ledger.record_action(bottle, kind, actor, reason, result, duration_ms=1.5)
    reserved = {
        ("global", "*", "tokens"): held.tokens,
        ("global", "*", "usd"): held.usd_micros,
        ("bottle:beta", "*", "usd"): held.usd_micros,
    }
    return Built(path, now, tuple(calls), actions, reserved)


@pytest.fixture
def empty_ledger(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "empty.db"
    Ledger.open(path).close()
    yield path
