"""The pure core of fleet budgets (bbnet/fleet.py): slice sizing, low water, settlement, the bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bbnet import fleet
from bbnet.fleet_lease import describe

amounts = st.integers(min_value=0, max_value=10**9)


def test_slice_size_fixed_or_fraction() -> None:
    cfg = fleet.SliceConfig(slice_tokens=1000, slice_fraction=0.1)
    assert fleet.slice_size(cfg, "tokens", 10**6) == 1000
    assert fleet.slice_size(cfg, "usd", 5_000_000) == 500_000  # no USD slice set: a tenth of the limit
    assert fleet.slice_size(fleet.SliceConfig(slice_fraction=0.5), "tokens", 0) == 1  # never empty


def test_top_up_waits_for_low_water() -> None:
    # a slice of 1000, low water at half: 600 left asks nothing, 400 left asks back to a whole slice
    assert fleet.top_up_ask(1000, 300, 100, 1000, 0.5) == 0
    assert fleet.top_up_ask(1000, 500, 100, 1000, 0.5) == 600
    # a call needing more than remains asks for all of it, low water or not
    assert fleet.top_up_ask(1000, 0, 0, 1000, 0.5, need=1500) == 500
    # over-consumed (remaining negative): the ask covers the debt too
    assert fleet.top_up_ask(1000, 1200, 0, 1000, 0.5) == 1200


def test_grant_is_the_ask_or_what_remains() -> None:
    assert fleet.grant_amount(100, 1000, 500, 300) == 100
    assert fleet.grant_amount(500, 1000, 500, 300) == 200
    assert fleet.grant_amount(500, 1000, 900, 300) == 0  # over the limit already: nothing


def test_settle_moves_consumption_and_returns_the_rest() -> None:
    s = fleet.settle(fleet.Lease(granted=1000, consumed=200), local_used=700, keep=1000)
    assert s.lease == fleet.Lease(1000, 700)
    assert (s.used_delta, s.reserved_delta, s.local_limit) == (500, -500, 1000)
    back = fleet.settle(s.lease, local_used=700, keep=750)  # idle: keep only what is held
    assert (back.lease, back.used_delta, back.reserved_delta) == (fleet.Lease(750, 700), 0, -250)


def test_settle_of_a_reclaimed_lease_shrinks_the_host_and_counts_late_usage() -> None:
    reclaimed = fleet.reclaim(fleet.Lease(1000, 300))
    assert (reclaimed.lease, reclaimed.reserved_delta) == (fleet.Lease(300, 300), -700)
    # the host, back, had consumed 800 of the 1000 it thought it held: the 500 unsettled count as
    # used (the overshoot, at most what it held), and its local limit falls to what it consumed
    late = fleet.settle(reclaimed.lease, local_used=800, keep=1000)
    assert (late.lease, late.used_delta, late.reserved_delta, late.local_limit) == (
        fleet.Lease(800, 800),
        500,
        0,
        800,
    )


@given(granted=amounts, consumed=amounts, used=amounts, keep=amounts)
def test_settle_invariants(granted: int, consumed: int, used: int, keep: int) -> None:
    old = fleet.Lease(max(granted, consumed), consumed)
    s = fleet.settle(old, used, keep)
    assert s.lease.granted >= s.lease.consumed >= old.consumed  # held never negative; consumption grows
    assert s.lease.consumed == max(old.consumed, used)
    assert s.lease.granted <= max(old.granted, s.lease.consumed)  # a settlement never grants
    assert s.reserved_delta == s.lease.held - old.held and s.used_delta == s.lease.consumed - old.consumed
    assert fleet.settle(s.lease, used, keep).used_delta == 0  # retried after a lost answer: no double count
    assert fleet.settle(s.lease, used, keep).reserved_delta == 0


@given(st.lists(st.tuples(amounts, amounts), max_size=8), amounts)
def test_pool_counters_follow_the_leases(events: list[tuple[int, int]], limit: int) -> None:
    """Grants and settlements keep the pool's reserved equal to the leases' holds, used to their
    consumption, and used + reserved within the limit while consumption stays within grants."""
    lease, used, reserved = fleet.Lease(), 0, 0
    for ask, spend in events:
        g = fleet.grant_amount(ask, limit, used, reserved)
        lease, reserved = fleet.after_grant(lease, g), reserved + g
        local_used = min(lease.granted, lease.consumed + spend)  # a host spends only within its slice
        s = fleet.settle(lease, local_used, lease.granted)
        lease, used, reserved = s.lease, used + s.used_delta, reserved + s.reserved_delta
        assert reserved == lease.held and used == lease.consumed
        assert used + reserved <= max(limit, 0)
    assert fleet.overshoot_bound([lease]) == reserved


def test_keep_and_bound() -> None:
    assert fleet.keep_amount(1000, 300, 200, release=False) == 1000
    assert fleet.keep_amount(1000, 300, 200, release=True) == 500
    assert fleet.overshoot_bound([fleet.Lease(1000, 400), fleet.Lease(50, 50)]) == 600
    assert fleet.slice_open(1000, 999) and not fleet.slice_open(1000, 1000)


def test_messages_never_show_the_password() -> None:
    url = "postgresql://bbnet:s3cret@db.example:5432/fleet"
    line = describe(url, RuntimeError("connection failed: FATAL:  password authentication failed (s3cret)"))
    assert "s3cret" not in line and line.startswith("fleet database: ")
    assert "\n" not in describe(url, RuntimeError("a\nb\nc"))
