"""The lease manager's steps on real ledgers: a host's SQLite file and a fleet database."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bbnet import fleet, shipping
from bbnet import pools as arith
from bbnet.fleet_lease import FleetLedger, LeaseManager, open_fleet
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Bottle, Budget, Outcome, ReserveRequest, ReserveResult, UsageRecord
from bbnet.names import Scope
from tests import pgserver

LIMIT = 10_000
MakeHost = Callable[..., tuple[FleetLedger, LeaseManager]]
CFG = fleet.SliceConfig(slice_tokens=1000, low_water=0.5, lease_seconds=10, settle_seconds=1, idle_seconds=5)


@pytest.fixture(params=["postgresql", "sqlite"])
def fleet_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The fleet database: PostgreSQL, and a SQLite file shared by the hosts (for trials)."""
    if request.param == "sqlite":
        return str(tmp_path / "fleet.db")
    url: str = request.getfixturevalue("pg_url")
    return url


def budget(period: str = "total", limit: int = LIMIT) -> Budget:
    return Budget(Scope.global_(), "anthropic", "tokens", limit, period, "settings")


@pytest.fixture
def make_host(tmp_path: Path, fleet_url: str) -> Iterator[MakeHost]:
    made: list[FleetLedger] = []

    def make(
        node: str, url: str = fleet_url, period: str = "total", limit: int = LIMIT
    ) -> tuple[FleetLedger, LeaseManager]:
        ledger = FleetLedger.open(tmp_path / f"{node}.db", node=node)
        ledger.add_bottle(Bottle("b1"))
        manager = LeaseManager(ledger, url, node, CFG, [budget(period, limit)], connect=open_fleet)
        ledger.lease = manager
        manager.begin(time.time())
        made.append(ledger)
        return ledger, manager

    yield make
    for ledger in made:
        ledger.lease = None  # no final settlement: each test says what it stops
        ledger.close()


def reserve(ledger: Ledger, key: str, out: int = 200) -> ReserveResult:
    """One call: reserved, and committed (usage within the hold) unless refused."""
    r = ledger.reserve(ReserveRequest(key, "b1", "a", "anthropic", "claude-sonnet-4", 100, out))
    if r.outcome is not Outcome.DENY:
        usage = UsageRecord("b1", "a", "anthropic", "claude-sonnet-4", 100, r.allowed_output_tokens)
        ledger.commit(key, usage)
    return r


def call(ledger: Ledger, key: str, out: int = 200) -> Outcome:
    return reserve(ledger, key, out).outcome


def fleet_view(url: str) -> tuple[int, int, dict[str, tuple[int, int]]]:
    with open_fleet(url) as f:
        pools = [p for p in f.pools() if p.scope == "global"]
        leases = {r["node"]: (r["granted"], r["consumed"]) for r in f.fleet_leases()}
    return sum(p.used for p in pools), sum(p.reserved for p in pools), leases


def local_global(ledger: Ledger) -> tuple[int, int]:
    (pool,) = [p for p in ledger.pools() if p.scope == "global"]
    return pool.limit, pool.used


def test_a_host_reserves_within_its_slice_and_settles(make_host: MakeHost, fleet_url: str) -> None:
    ledger, manager = make_host("a")
    assert local_global(ledger) == (1000, 0)  # the first slice, leased before any call
    assert fleet_view(fleet_url) == (0, 1000, {"a": (1000, 0)})
    assert call(ledger, "k1") is Outcome.ALLOW and call(ledger, "k2") is Outcome.ALLOW  # 600 of 1000
    now = time.time() + CFG.settle_seconds
    manager.step(now)  # below low water (400 < 500): topped up to a whole slice; settled
    assert local_global(ledger) == (1600, 600)
    assert fleet_view(fleet_url) == (600, 1000, {"a": (1600, 600)})
    manager.step(now + CFG.settle_seconds)  # settled again: nothing changes twice
    assert fleet_view(fleet_url) == (600, 1000, {"a": (1600, 600)})


def test_a_call_bigger_than_the_slice_leases_what_it_needs(make_host: MakeHost, fleet_url: str) -> None:
    ledger, _ = make_host("a")
    assert call(ledger, "big", out=3000) is Outcome.ALLOW  # 3100 > the 1000 slice: one round trip
    assert local_global(ledger) == (3100, 3100)


def test_an_idle_host_returns_its_slice_and_leases_again_on_use(make_host: MakeHost, fleet_url: str) -> None:
    ledger, manager = make_host("a")
    call(ledger, "k1")
    now = time.time() + CFG.settle_seconds
    manager.step(now)
    manager.step(now + CFG.idle_seconds + 1)  # idle: what no call holds goes back
    assert local_global(ledger) == (300, 300)
    assert fleet_view(fleet_url) == (300, 0, {"a": (300, 300)})
    assert call(ledger, "k2") is Outcome.ALLOW  # the next call leases a slice again
    assert fleet_view(fleet_url)[1] > 0


def test_a_period_ends_its_slices_go_back(make_host: MakeHost, fleet_url: str) -> None:
    ledger, manager = make_host("a", period="day")
    call(ledger, "k1")
    tomorrow = arith.period_end("day", arith.period_start("day", time.time())) + 1
    manager.step(tomorrow)
    with open_fleet(fleet_url) as f:
        leases = f.fleet_leases()
    today = [r for r in leases if r["period_start"] < tomorrow - 86400 + 1]
    fresh = [r for r in leases if r["period_start"] > tomorrow - 2]
    assert [(r["granted"], r["consumed"]) for r in today] == [(300, 300)]  # settled, the rest returned
    assert [(r["granted"], r["consumed"]) for r in fresh] == [(1000, 0)]  # the new day's first slice


def test_two_hosts_and_a_dead_ones_lease_reclaimed(make_host: MakeHost, fleet_url: str) -> None:
    dead, dead_manager = make_host("dead")
    call(dead, "d1")
    now = time.time() + CFG.settle_seconds
    dead_manager.step(now)  # settles 300 of its 1000 slice (700 left: above low water)
    call(dead, "d2")  # consumed, never settled: the host dies here
    _, manager = make_host("alive")
    manager.step(now + 1)
    assert fleet_view(fleet_url)[2]["dead"] == (1000, 300)
    manager.step(now + CFG.lease_seconds + 1)  # past the dead host's expiry: its 700 unconsumed go back
    used, reserved, leases = fleet_view(fleet_url)
    assert leases["dead"] == (300, 300) and reserved == leases["alive"][0] - leases["alive"][1]
    assert fleet.overshoot_bound([fleet.Lease(1000, 300)]) == 700  # d2's 300 was within that bound
    dead_manager.step(now + CFG.lease_seconds + 2)  # the host comes back: its late usage is counted,
    used, _, leases = fleet_view(fleet_url)  # its slice is what it consumed, then a fresh one on top
    assert used == 600 and leases["dead"] == (1600, 600) and local_global(dead) == (1600, 600)


def test_fleet_unreachable_at_start_fails_closed_in_one_line(make_host: MakeHost, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    ledger, _ = make_host("a", url=str(tmp_path / "file" / "fleet.db"))  # cannot be created
    with pytest.raises(LedgerError) as e:
        call(ledger, "k1")
    assert str(e.value).startswith("fleet database: ") and "\n" not in str(e.value)
    assert ledger.reservations() == []  # nothing held, nothing recorded


def test_a_wrong_password_is_one_line_without_it(make_host: MakeHost, pg_server: pgserver.PgServer) -> None:
    wrong = "not-the-password-x"
    url = pg_server.url(password=wrong)
    ledger, _ = make_host("a", url=url)
    with pytest.raises(LedgerError) as e:
        call(ledger, "k1")
    line = str(e.value)
    assert "password authentication failed" in line and wrong not in line and "\n" not in line
    assert ledger.reservations() == []


def test_a_nearly_spent_pool_is_leased_per_call_until_it_is_exhausted(
    make_host: MakeHost, fleet_url: str
) -> None:
    _, a_manager = make_host("a", limit=2000)
    b, b_manager = make_host("b", limit=2000)  # the two first slices take the whole pool
    assert [call(b, f"b{i}") for i in range(3)] == [Outcome.ALLOW] * 3  # 900 of b's 1000
    r = reserve(b, "b3")
    assert r.outcome is Outcome.DENY and not r.exhausted  # the fleet is short, not spent: a holds 1000
    now = time.time() + CFG.settle_seconds
    a_manager.step(now)
    a_manager.step(now + CFG.settle_seconds)  # a hears the pool is short and gives back what it does not hold
    assert fleet_view(fleet_url)[2]["a"] == (0, 0)
    outcomes, exhausted = [], False
    for i in range(4, 20):  # b now leases per call what each needs, until real usage spends the pool
        r = reserve(b, f"b{i}")
        outcomes.append(r.outcome)
        exhausted = r.outcome is Outcome.DENY and r.exhausted
        if exhausted:
            break
        now += CFG.settle_seconds
        b_manager.step(now)
    assert exhausted and Outcome.ALLOW in outcomes
    used, reserved, _ = fleet_view(fleet_url)
    assert 2000 - 101 < used <= 2000 and reserved == 0


def usage_by_node(ledger: Ledger) -> dict[str, tuple[int, int, frozenset[str]]]:
    """Per node: rows, tokens, and the keys."""
    out: dict[str, tuple[int, int, frozenset[str]]] = {}
    for r in ledger.usage(limit=10**6):
        n, tokens, keys = out.get(r["node"], (0, 0, frozenset()))
        out[r["node"]] = (n + 1, tokens + r["input_tokens"] + r["output_tokens"], keys | {r["key"]})
    return out


def fleet_usage(url: str) -> dict[str, tuple[int, int, frozenset[str]]]:
    with open_fleet(url) as f:
        return usage_by_node(f)


def commit_rows(ledger: Ledger, prefix: str, n: int) -> None:
    for i in range(n):
        ledger.commit(f"{prefix}{i}", UsageRecord("b1", "a", "anthropic", "claude-sonnet-4", 10 + i % 7, 5))


def test_usage_ships_to_the_fleet_once_per_row(make_host: MakeHost, fleet_url: str) -> None:
    a, a_manager = make_host("a")
    b, b_manager = make_host("b")
    calls = [call(a, f"a-call{i}") for i in range(3)] + [call(b, "b-call")]
    assert calls == [Outcome.ALLOW] * 4
    commit_rows(a, "a-row", 2 * shipping.BATCH_ROWS + 7)  # three batches
    now = time.time() + CFG.settle_seconds
    for i in range(4):  # one batch per step while behind
        a_manager.step(now + i * 0.1)
        b_manager.step(now + i * 0.1)
    union = usage_by_node(a) | usage_by_node(b)
    assert union["a"][0] == 3 + 2 * shipping.BATCH_ROWS + 7 and union["b"][0] == 1
    assert fleet_usage(fleet_url) == union
    with open_fleet(fleet_url) as f:
        assert {r["node"]: r["shipped_upto"] for r in f.fleet_nodes()} == {
            "a": a.last_usage_id(), "b": b.last_usage_id()}  # fmt: skip
        fleet_ids = f.last_usage_id()
    for i in range(3):  # shipping again adds nothing
        a_manager.step(now + 2 * CFG.settle_seconds * (i + 1))
    assert fleet_usage(fleet_url) == union
    with open_fleet(fleet_url) as f:
        assert f.last_usage_id() == fleet_ids
    call(a, "a-late")  # a new row goes on the next interval
    a_manager.step(now + 10 * CFG.settle_seconds)
    assert fleet_usage(fleet_url)["a"] == usage_by_node(a)["a"]


def test_a_stale_batch_writes_nothing_and_a_repeat_is_skipped(make_host: MakeHost, fleet_url: str) -> None:
    a, _ = make_host("a")
    commit_rows(a, "k", 5)
    rows = a.usage()
    with open_fleet(fleet_url) as f:
        first = shipping.batch(0, rows[:3], "a")
        assert first is not None and f.fleet_ship("a", first) == (rows[2]["id"], [])
        assert f.fleet_ship("a", first) == (rows[2]["id"], [])  # stale: the watermark moved on
        assert len(f.usage()) == 3
        overlap = shipping.batch(rows[2]["id"], rows, "a")  # the first three again, and two more
        assert overlap is not None and f.fleet_ship("a", overlap) == (rows[4]["id"], [])
        assert sorted(r["key"] for r in f.usage()) == [f"k{i}" for i in range(5)]


def test_a_recreated_host_ledger_ships_again_from_its_start(
    make_host: MakeHost, fleet_url: str, tmp_path: Path
) -> None:
    a, manager = make_host("a")
    commit_rows(a, "old", 5)
    manager.step(time.time() + CFG.settle_seconds)
    assert fleet_usage(fleet_url)["a"][0] == 5
    a.close()
    (tmp_path / "a.db").unlink()
    fresh, fresh_manager = make_host("a")  # its ids begin again at 1, below the fleet's watermark
    commit_rows(fresh, "new", 2)
    fresh_manager.step(time.time() + CFG.settle_seconds)
    assert fleet_usage(fleet_url)["a"][0] == 7


def test_another_nodes_key_is_never_overwritten(make_host: MakeHost, fleet_url: str) -> None:
    a, a_manager = make_host("a")
    b, _ = make_host("b")
    commit_rows(a, "same", 1)
    commit_rows(b, "same", 1)  # the one key both hosts used (flow ids never do: they are UUIDs)
    a_manager.step(time.time() + CFG.settle_seconds)
    with open_fleet(fleet_url) as f:
        batch = shipping.batch(0, b.usage(), "b")
        assert batch is not None and f.fleet_ship("b", batch) == (b.last_usage_id(), ["same0"])
    assert {n: v[0] for n, v in fleet_usage(fleet_url).items()} == {"a": 1}


def test_shipped_usage_never_seeds_a_new_fleet_pool(make_host: MakeHost, fleet_url: str) -> None:
    a, manager = make_host("a")
    call(a, "k1")
    manager.step(time.time() + CFG.settle_seconds)
    assert fleet_usage(fleet_url)["a"][0] == 1
    with open_fleet(fleet_url) as f:  # a budget set mid-period: its pool is new, a's usage is not in it
        f.set_budget(Budget(Scope.global_(), "*", "tokens", LIMIT, "day", "cli"))
        (pool,) = [p for p in f.pools() if p.provider == "*"]
    assert pool.used == 0  # a's 300 reach it through a's lease, as every fleet pool's usage does
