"""The ledger's repository API against both backends: a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Bottle, Budget, Outcome, ReserveRequest, UsageRecord
from bbnet.names import Scope
from bbnet.pools import period_end, period_start
from bbnet.prices import rates

MODEL = "claude-sonnet-4-5-20250929"


def _req(key: str, bottle: str = "a", inp: int = 100, out: int = 100, **kw: object) -> ReserveRequest:
    return ReserveRequest(key, bottle, "agent1", "anthropic", MODEL, inp, out, **kw)  # type: ignore[arg-type]


def _usage(bottle: str = "a", inp: int = 100, out: int = 50, **kw: object) -> UsageRecord:
    return UsageRecord(bottle, "agent1", "anthropic", MODEL, input_tokens=inp, output_tokens=out, **kw)  # type: ignore[arg-type]


@pytest.fixture
def ledger(ledger_db: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_db) as led:
        led.add_bottle(Bottle("a"))
        yield led


def test_sqlite_files_are_private_and_wal(db: Path) -> None:
    ledger = Ledger.open(db)
    ledger.add_bottle(Bottle("a"))
    ledger.reserve(_req("k"))
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    assert ledger._read("PRAGMA journal_mode")[0][0] == "wal"


def test_reserve_commit_release_cycle(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000))
    r = ledger.reserve(_req("k1", inp=100, out=200))
    assert r.outcome is Outcome.ALLOW and r.tokens == 300
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (0, 300)
    c = ledger.commit("k1", _usage(inp=90, out=150))
    assert c.recorded and c.cost_usd is not None and c.cost_usd > 0
    [pool] = ledger.pools()
    assert (pool.used, pool.reserved) == (240, 0)
    again = ledger.commit("k1", _usage(inp=90, out=150))
    assert not again.recorded
    assert len(ledger.usage()) == 1
    assert ledger.pools()[0].used == 240
    ledger.reserve(_req("k2"))
    assert ledger.release("k2") and not ledger.release("k2")
    assert ledger.pools()[0].reserved == 0


def test_degrade_then_deny_names_governing_pool(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.global_(), "*", "tokens", 10_000))
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 500))
    r = ledger.reserve(_req("k1", inp=100, out=1000))
    assert r.outcome is Outcome.DEGRADE and r.allowed_output_tokens == 400
    assert r.governing is not None and r.governing.scope == "bottle:a"
    d = ledger.reserve(_req("k2", inp=100, out=1000))
    assert d.outcome is Outcome.DENY and d.governing is not None and d.governing.scope == "bottle:a"
    assert not d.exhausted  # only in-flight holds are in the way
    ledger.commit("k1", _usage(inp=100, out=400))
    d = ledger.reserve(_req("k3", inp=100, out=10))
    assert d.outcome is Outcome.DENY and d.exhausted
    assert d.needed == 101  # its input and the one output token it could have been degraded to


def test_smallest_recent_call(ledger: Ledger) -> None:
    ledger.add_bottle(Bottle("b"))
    assert ledger.smallest_recent_call("a", "*", "tokens", 5) is None
    calls = [("anthropic", 900, 100, False), ("anthropic", 300, 20, False), ("anthropic", 50, 5, True),
             ("anthropic", 0, 0, False), ("anthropic", 400, 50, False), ("openai", 700, 10, False)]  # fmt: skip
    for i, (provider, inp, out, estimated) in enumerate(calls):
        ledger.reserve(_req(f"k{i}"))
        ledger.commit(f"k{i}", UsageRecord("a", "agent1", provider, MODEL, input_tokens=inp, output_tokens=out,
                                           estimated=estimated))  # fmt: skip
    ledger.reserve(_req("kb", bottle="b"))
    ledger.commit("kb", _usage("b", inp=10, out=1))
    # estimated rows and calls that spent nothing are not a call's size; other bottles not either
    assert ledger.smallest_recent_call("a", "anthropic", "tokens", 10) == 320
    assert ledger.smallest_recent_call("a", "anthropic", "tokens", 1) == 450  # the last real call
    assert ledger.smallest_recent_call("a", "openai", "tokens", 10) == 710
    assert ledger.smallest_recent_call("a", "*", "tokens", 1) == 710
    micros = ledger.smallest_recent_call("a", "anthropic", "usd", 10)
    assert micros is not None and micros > 0
    with pytest.raises(LedgerError, match="invalid count 0"):
        ledger.smallest_recent_call("a", "*", "tokens", 0)


def test_usd_pool_degrades_output(ledger: Ledger) -> None:
    r8 = rates("anthropic", MODEL)
    assert r8 is not None
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "usd", 10_000))  # one cent
    r = ledger.reserve(_req("k", inp=1000, out=10_000, rates=r8))
    assert r.outcome is Outcome.DEGRADE
    assert r.usd_micros <= 10_000
    assert r.allowed_output_tokens == int((10_000 - 1000 * r8.input_micros) // r8.output_micros)


def test_unpriced_model_counts_tokens_but_not_usd(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "usd", 1))
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 1000))
    u = UsageRecord("a", "x", "openai", "no-such-model-xyz", input_tokens=10, output_tokens=5)
    c = ledger.commit("u1", u)
    assert c.cost_usd is None
    row = ledger.usage()[0]
    assert row["cost_usd"] is None and row["cost_micros"] is None
    used = {p.unit: p.used for p in ledger.pools()}
    assert used == {"tokens": 15, "usd": 0}


def test_new_period_starts_fresh_pool(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 1000, period="day"))
    day0 = period_start("day", 1_800_000_000)
    ledger.commit("old", _usage(inp=300, out=0, ts=day0 + 10))
    assert [p.used for p in ledger.pools(now=day0 + 20)] == [300]
    assert [p.used for p in ledger.pools(now=period_end("day", day0) + 1)] == [0]


def test_budget_set_mid_period_counts_usage_so_far(ledger: Ledger) -> None:
    ledger.commit("before", _usage(inp=70, out=30))
    ledger.set_budget(Budget(Scope.of_bottle("a"), "anthropic", "tokens", 1000, period="month"))
    assert ledger.pools()[0].used == 100


def test_expired_lease_is_billed_as_a_lost_call(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 1000))
    ledger.set_budget(Budget(Scope.global_(), "*", "usd", 10_000_000))
    ledger.reserve(_req("short", inp=120, out=300, lease_seconds=0.0, rates=rates("anthropic", MODEL, 120)))
    ledger.reserve(_req("long", lease_seconds=3600))
    [(bottle, lost)] = ledger.sweep_expired()
    assert bottle == "a" and lost.recorded and lost.cost_usd is not None and lost.cost_usd > 0
    assert [r["key"] for r in ledger.reservations()] == ["long"]
    [row] = ledger.usage()
    assert (row["key"], row["input_tokens"], row["output_tokens"]) == ("short", 120, 0)
    assert row["estimated"] == 1 and row["lost"] == 1 and row["status"] is None
    pools = {p.unit: p for p in ledger.pools()}
    assert (pools["tokens"].used, pools["tokens"].reserved) == (120, 200)  # the long hold stands
    assert (pools["usd"].used, pools["usd"].reserved) == (row["cost_micros"], 0)
    assert ledger.sweep_expired() == []  # nothing left to sweep: the lost row is not billed twice


def test_renewed_lease_is_not_swept(ledger: Ledger) -> None:
    ledger.reserve(_req("live", lease_seconds=0.0))
    assert ledger.renew({"live": 0, "gone": 0}, 3600) == 1  # a key with no reservation is skipped
    assert ledger.sweep_expired() == [] and [r["key"] for r in ledger.reservations()] == ["live"]
    assert ledger.commit("live", _usage(inp=90, out=40)).recorded
    assert [(r["input_tokens"], r["output_tokens"], r["lost"]) for r in ledger.usage()] == [(90, 40, 0)]


def test_commit_after_sweep_changes_nothing(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 1000))
    ledger.reserve(_req("k", lease_seconds=0.0))
    ledger.sweep_expired()
    assert not ledger.commit("k", _usage()).recorded  # one usage row per call, ever
    assert [(r["input_tokens"], r["lost"]) for r in ledger.usage()] == [(100, 1)]
    assert (ledger.pools()[0].used, ledger.pools()[0].reserved) == (100, 0)


def test_lost_call_bills_the_output_its_stream_had_shown(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 1000))
    ledger.reserve(_req("k", inp=100, out=300))
    ledger.renew({"k": 40}, 3600)
    ledger.renew({"k": 25}, 0.0)  # a stale figure never lowers what was seen
    assert len(ledger.sweep_expired()) == 1
    assert [(r["input_tokens"], r["output_tokens"], r["lost"]) for r in ledger.usage()] == [(100, 40, 1)]
    assert (ledger.pools()[0].used, ledger.pools()[0].reserved) == (140, 0)


def test_lost_call_that_spends_the_pool_reports_it_exhausted(ledger: Ledger) -> None:
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 150))
    ledger.reserve(_req("k", inp=100, out=50, lease_seconds=0.0))
    ledger.commit("before", _usage(inp=60, out=0))
    [(_, lost)] = ledger.sweep_expired()
    assert [p.scope for p in lost.exhausted] == ["bottle:a"]


def test_pre_v4_reservation_bills_its_whole_hold(ledger: Ledger) -> None:
    ledger.reserve(_req("old", inp=100, out=100, lease_seconds=0.0))
    ledger._conn.execute("UPDATE reservations SET input_tokens = NULL")  # as a v3 ledger left it
    ledger.sweep_expired()
    assert [(r["input_tokens"], r["estimated"], r["lost"]) for r in ledger.usage()] == [(200, 1, 1)]


def test_nested_bottles_and_agent_pools(ledger: Ledger) -> None:
    ledger.add_bottle(Bottle("child", parent="a"))
    ledger.set_budget(Budget(Scope.of_bottle("a"), "*", "tokens", 300))
    ledger.set_budget(Budget(Scope.of_agent("child", "agent1"), "*", "tokens", 10_000))
    r = ledger.reserve(_req("k", bottle="child", inp=100, out=500))
    assert r.outcome is Outcome.DEGRADE and r.governing is not None and r.governing.scope == "bottle:a"
    scopes = [p.scope for p in ledger.path_pools("child", "agent1", "anthropic")]
    assert scopes == ["bottle:a", "agent:child/agent1"]


def test_bad_input_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="already exists"):
        ledger.add_bottle(Bottle("a"))
    with pytest.raises(ValueError, match="invalid bottle name"):
        ledger.add_bottle(Bottle("Not_OK"))
    with pytest.raises(LedgerError, match="parent bottle 'ghost'"):
        ledger.add_bottle(Bottle("b", parent="ghost"))
    with pytest.raises(LedgerError, match="unknown bottle"):
        ledger.reserve(_req("k", bottle="ghost"))
    with pytest.raises(LedgerError, match="unknown provider"):
        ledger.set_budget(Budget(Scope.global_(), "nope", "tokens", 5))
    with pytest.raises(LedgerError, match="invalid limit"):
        ledger.set_budget(Budget(Scope.global_(), "openai", "tokens", -5))
    with pytest.raises(LedgerError, match="negative"):
        ledger.commit("k", _usage(inp=-1))
    assert ledger.budgets() == [] and ledger.usage() == []


def test_desired_state_and_actions(ledger: Ledger) -> None:
    assert ledger.desired_state("a").state == "open"
    ledger.set_desired_state("a", "cutoff", "budget", "controller")
    assert ledger.desired_state("a").state == "cutoff"
    with pytest.raises(LedgerError, match="invalid state"):
        ledger.set_desired_state("a", "paused")
    aid = ledger.record_action("a", "cutoff", "controller", "budget", "ok", 1.5, {"pool": "bottle:a"})
    [act] = ledger.actions()
    assert act.id == aid and act.detail == '{"pool": "bottle:a"}'
    ledger.remove_bottle("a")
    assert ledger.get_bottle("a") is None and ledger.bottles(include_removed=True)[0].removed_at


def test_open_refuses_unusable_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError, match="cannot create ledger"):
        Ledger.open(blocker / "ledger.db")
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger.open(tmp_path / "absent.db", create=False)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open ledger"):
        Ledger.open(garbage)


def test_data_version_moves_when_another_connection_commits(ledger: Ledger, ledger_db: str) -> None:
    """The controller's and the dashboard's "did anything change?" probe, on both backends."""
    before = ledger.data_version()
    assert ledger.data_version() == before  # nothing happened
    with Ledger.open(ledger_db) as other:
        other.add_bottle(Bottle("b"))
    assert ledger.data_version() != before
