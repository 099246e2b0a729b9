"""The ledger feed: reads only when another connection committed, tails by id, rereads on demand."""

from __future__ import annotations

from bbnet.ledger import Ledger
from bbnet.model import UsageRecord
from dashboard.feed import LedgerFeed

from .conftest import NOW


def test_poll_reads_nothing_until_another_connection_commits(app_ledger: Ledger, writer: Ledger) -> None:
    feed = LedgerFeed(app_ledger, clock=lambda: NOW)
    first = feed.poll()
    assert first.changed
    assert [a.action for a in first.new_actions] == ["cutoff"]
    assert feed.tally.last_id == 40
    assert not feed.poll().changed

    writer.commit("new-1", UsageRecord("ta", "main", "anthropic", "claude-sonnet-4-5", 1000, 234, ts=NOW))
    writer.record_action("ta", "cutoff", "controller", "budget exhausted", "ok")
    poll = feed.poll()
    assert poll.changed
    assert poll.touched == {"ta"}
    assert [(a.bottle, a.action) for a in poll.new_actions] == [("ta", "cutoff")]
    usage = feed.tally.usage("ta")
    assert usage is not None and usage.recent[-1].tokens == 1234
    assert not feed.poll().changed


def test_own_writes_show_after_invalidate(app_ledger: Ledger) -> None:
    feed = LedgerFeed(app_ledger, clock=lambda: NOW)
    feed.poll()
    app_ledger.set_desired_state("ta", "frozen", "operator asked", "operator:test")
    assert not feed.poll().changed  # our own commit does not move our data_version
    assert feed.states["ta"].state == "open"
    feed.invalidate()
    assert feed.poll().changed
    assert feed.states["ta"].state == "frozen"


def test_detail_lists_pools_root_first_calls_and_history(app_ledger: Ledger) -> None:
    feed = LedgerFeed(app_ledger, clock=lambda: NOW)
    feed.poll()
    detail = feed.detail("tb")
    assert detail is not None
    assert [(p.scope, p.provider, p.unit) for p in detail.pools] == [
        ("global", "anthropic", "tokens"),
        ("bottle:team", "*", "tokens"),
        ("bottle:tb", "openai", "usd"),
    ]
    assert detail.usage is not None and detail.usage.calls == 20
    assert [(a.action, a.actor) for a in detail.history] == [("cutoff", "controller")]
    assert detail.state.state == "cutoff"
    assert feed.detail("ghost") is None
