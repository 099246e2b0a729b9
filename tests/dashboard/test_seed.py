"""A tally seeded from the ledger's aggregates shows exactly what folding every row shows."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.budgets import Burn
from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, UsageRecord
from bbnet.names import Scope
from dashboard.feed import LedgerFeed
from dashboard.rows import build_rows
from dashboard.tally import DAY, HOUR, RECENT_CALLS, Tally, call_from_row

NOW = 1_767_268_800.0
BOTTLES = ("team", "ta", "tb", "solo", "gone")
MODELS = {"anthropic": ("claude-sonnet-4-5", "no-such-model"), "openai": ("gpt-4o", "gpt-4o-mini")}


def _calls(ledger: Ledger, rnd: random.Random, first: int, count: int, latest: float) -> None:
    """Calls over the two days before ``latest``, committed out of time order (a meter stamps a
    call when it started, and long streams finish late)."""
    for k in range(first, first + count):
        provider = rnd.choice(("anthropic", "openai"))
        ledger.commit(
            f"k{k}",
            UsageRecord(
                rnd.choice(BOTTLES[1:]), rnd.choice(("main", "sub")), provider,
                MODELS[provider][rnd.random() < 0.2],
                input_tokens=rnd.randrange(1, 4000), output_tokens=rnd.randrange(0, 800),
                ts=latest - rnd.choice((rnd.uniform(0, 2 * DAY), rnd.uniform(0, 2 * HOUR))),
            ),
        )  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    rnd = random.Random(11)
    with Ledger.open(tmp_path / "ledger.db") as led:
        led.add_bottle(Bottle("team"))
        for name in BOTTLES[1:]:
            led.add_bottle(Bottle(name, parent="team" if name.startswith("t") else None))
        led.set_budget(Budget(Scope.of_bottle("team"), "*", "tokens", 2_000_000))
        led.set_budget(Budget(Scope.of_bottle("ta"), "openai", "usd", 5_000_000, "day"))
        _calls(led, rnd, 0, 400, NOW)
        led.remove_bottle("gone")  # its usage stays in the ledger and in the tally
        yield led


def _folded(ledger: Ledger, now: float) -> Tally:
    """The tally the way the dashboard used to build it: every row, in id order."""
    tally = Tally()
    tally.add((call_from_row(r) for r in ledger.usage(limit=1_000_000)), now)
    return tally


def _burns(tally: Tally, now: float) -> dict[tuple[str, str, str], Burn]:
    return {(b.bottle, b.agent, b.provider): b for b in tally.burns(now)}


def _assert_same(seeded: Tally, folded: Tally, now: float) -> None:
    assert seeded.last_id == folded.last_id
    for name in BOTTLES:
        assert seeded.usage(name) == folded.usage(name), name
    assert _burns(seeded, now) == _burns(folded, now)


def test_a_seeded_feed_equals_the_fold_of_every_row_now_and_as_calls_age(ledger: Ledger) -> None:
    feed = LedgerFeed(ledger, clock=lambda: NOW)
    feed.poll()
    folded = _folded(ledger, NOW)
    gone = folded.usage("gone")
    assert gone is not None and len(gone.recent) == RECENT_CALLS  # the data exercises every part
    assert any(u.unpriced for u in map(folded.usage, BOTTLES) if u is not None)
    assert any(b.tokens_1h for b in folded.burns(NOW))  # some calls inside the last hour
    _assert_same(feed.tally, folded, NOW)
    # what the table shows: the same rows over the same bottles, states and pools
    assert feed.rows() == build_rows(
        feed.bottles, feed.states, feed.pools, folded.usage, folded.burns(NOW), NOW
    )
    for later in (NOW + 30 * 60, NOW + HOUR + 1, NOW + DAY - 60, NOW + 2 * DAY):
        assert _burns(feed.tally, later) == _burns(folded, later)


def test_calls_committed_after_seeding_are_tailed_onto_the_seed(ledger: Ledger, tmp_path: Path) -> None:
    feed = LedgerFeed(ledger, clock=lambda: NOW)
    feed.poll()
    with Ledger.open(tmp_path / "ledger.db", create=False) as meter:
        _calls(meter, random.Random(12), 400, 60, NOW)
    poll = feed.poll()
    assert poll.changed and poll.touched
    assert feed.tally.last_id == 460
    _assert_same(feed.tally, _folded(ledger, NOW), NOW)


def test_seeding_an_empty_ledger_then_tailing(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "empty.db") as ledger, Ledger.open(tmp_path / "empty.db") as meter:
        ledger.add_bottle(Bottle("solo"))
        feed = LedgerFeed(ledger, clock=lambda: NOW)
        assert feed.poll().touched == frozenset()
        assert feed.tally.last_id == 0 and feed.tally.usage("solo") is None
        meter.commit("first", UsageRecord("solo", "main", "openai", "gpt-4o", 10, 5, ts=NOW - 1))
        assert feed.poll().touched == {"solo"}
        _assert_same(feed.tally, _folded(ledger, NOW), NOW)
