"""Property: for any sequence of reserve/commit/release over a random bottle tree, pools never
overshoot (when actual <= reserved) and the maintained counters equal a from-scratch recomputation.
On both backends.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, Outcome, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.pools import path_scopes
from bbnet.prices import rates

MODEL = "claude-sonnet-4-5-20250929"
PROVIDERS = ("anthropic", "openai")
AGENTS = ("ag1", "ag2")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[tuple[str, str | None]], list[Budget], list[tuple]]:
    n = draw(st.integers(1, 5))
    tree: list[tuple[str, str | None]] = []
    for i in range(n):
        parent = draw(st.sampled_from([None, *(name for name, _ in tree)]))
        tree.append((f"b{i}", parent))
    names = [name for name, _ in tree]
    scopes = st.one_of(
        st.just(Scope.global_()),
        st.sampled_from(names).map(Scope.of_bottle),
        st.tuples(st.sampled_from(names), st.sampled_from(AGENTS)).map(lambda t: Scope.of_agent(*t)),
    )
    budget = st.builds(
        lambda scope, provider, unit, limit: Budget(scope, provider, unit, limit),
        scopes,
        st.sampled_from(("*", *PROVIDERS)),
        st.sampled_from(("tokens", "usd")),
        st.integers(0, 5000),
    )
    budgets = {(str(b.scope), b.provider, b.unit): b for b in draw(st.lists(budget, max_size=6))}
    op = st.tuples(
        st.sampled_from(("commit", "commit", "release", "hold")),
        st.sampled_from(names),
        st.sampled_from(AGENTS),
        st.sampled_from(PROVIDERS),
        st.integers(0, 800),  # input estimate
        st.integers(0, 800),  # max output
        st.one_of(st.sampled_from((0.0, 1.0)), st.floats(0, 1)),  # fraction of the hold really used
        st.integers(0, 800),  # cache-read tokens (within input)
    )
    return tree, list(budgets.values()), draw(st.lists(op, min_size=1, max_size=25))


def _recompute(ledger: Ledger) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Pools from scratch: usage rows and open reservations, matched to budgets by path."""
    parents = {b.name: b.parent for b in ledger.bottles()}

    def chain(b: str) -> list[str]:
        out = []
        cur: str | None = b
        while cur is not None:
            out.append(cur)
            cur = parents[cur]
        return out

    totals: dict[tuple[str, str, str], list[int]] = {}
    for budget in ledger.budgets():
        key = (str(budget.scope), budget.provider, budget.unit)
        used = reserved = 0
        for u in ledger.usage(limit=10_000):
            if str(budget.scope) in path_scopes(chain(u["bottle"]), u["agent"]) and budget.provider in (
                "*",
                u["provider"],
            ):
                used += (
                    u["input_tokens"] + u["output_tokens"]
                    if budget.unit == "tokens"
                    else u["cost_micros"] or 0
                )
        for r in ledger.reservations():
            if str(budget.scope) in path_scopes(chain(r["bottle"]), r["agent"]) and budget.provider in (
                "*",
                r["provider"],
            ):
                reserved += r["tokens"] if budget.unit == "tokens" else r["usd_micros"]
        totals[key] = [used, reserved]
    return {k: (v[0], v[1]) for k, v in totals.items()}


@contextmanager
def fresh_ledger(backend: str, request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """An empty ledger per example: a new SQLite file, or a new database on the session's server."""
    if backend == "postgresql":
        with Ledger.open(request.getfixturevalue("pg_server").new_database()) as ledger:
            yield ledger
        return
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "l.db") as ledger:
        yield ledger


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@settings(
    max_examples=200,
    deadline=None,
    # the request fixture only fetches the session's server: nothing is shared between examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(world=worlds())
def test_pools_never_overshoot_and_match_recomputation(
    backend: str, request: pytest.FixtureRequest, world: tuple
) -> None:
    tree, budgets, ops = world
    with fresh_ledger(backend, request) as ledger:
        for name, parent in tree:
            ledger.add_bottle(Bottle(name, parent=parent))
        for b in budgets:
            ledger.set_budget(b)
        for i, (what, bottle, agent, provider, inp, out, frac, cached) in enumerate(ops):
            model = MODEL if provider == "anthropic" else "gpt-4o"
            req = ReserveRequest(
                f"k{i}", bottle, agent, provider, model, inp, out, rates(provider, model, inp)
            )
            res = ledger.reserve(req)
            if res.outcome is not Outcome.DENY and what != "hold":
                if what == "release":
                    assert ledger.release(req.key)
                else:
                    real_in = int(inp * frac)
                    usage = UsageRecord(
                        bottle,
                        agent,
                        provider,
                        model,
                        input_tokens=real_in,
                        output_tokens=int(res.allowed_output_tokens * frac),
                        cache_read_tokens=min(cached, real_in),
                    )
                    assert ledger.commit(req.key, usage).recorded
            pools = ledger.pools()
            for p in pools:
                assert p.used + p.reserved <= p.limit, p
                assert p.reserved >= 0
            expected = _recompute(ledger)
            assert {(p.scope, p.provider, p.unit): (p.used, p.reserved) for p in pools} == expected
