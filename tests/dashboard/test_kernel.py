"""Keys that reach the kernel: a real bottle (netns, veth, cgroup, nftables), under the root lock."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from bbnet.ledger import Ledger
from dashboard.app import Dashboard
from dashboard.modals import ConfirmKill
from dashboard.widgets import BottleTable
from enforcer import bottles, links
from enforcer.nft import Nft
from netrules import render
from tests.enforcer.conftest import remove_test_bottle

pytestmark = [pytest.mark.root, pytest.mark.asyncio]

TEST_POOL = "10.243.176.0/24"  # apart from the other suites' pools
PROXY_PORT = 18081


@pytest.fixture
def real_bottle(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(ledger path, bottle name); everything made is removed afterwards, also on failure."""
    path, name = tmp_path / "ledger.db", f"dsh{secrets.token_hex(3)}"
    with Ledger.open(path) as ledger:
        try:
            bottles.create(ledger, bottles.Launch(name, proxy_port=PROXY_PORT), pool=TEST_POOL)
            yield path, name
        finally:
            remove_test_bottle(ledger, name)
            with contextlib.suppress(Exception):
                Nft().run([{"delete": {"table": {"family": render.FAMILY, "name": render.TABLE}}}])


async def _press_on(app: Dashboard, pilot: Pilot[None], bottle: str, *keys: str) -> None:
    table = app.query_one(BottleTable)
    table.move_cursor(row=table.get_row_index(bottle))
    await pilot.press(*keys)
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_c_cuts_the_bottle_off_in_the_kernel_and_r_restores_it(real_bottle: tuple[Path, str]) -> None:
    path, name = real_bottle
    with Ledger.open(path, create=False) as ledger, Ledger.open(path, create=False) as check:
        veth = check.get_bottle(name).veth  # type: ignore[union-attr]
        nft = Nft()
        assert veth not in nft.cutoff_counters()
        app = Dashboard(ledger, actor="operator:test")
        async with app.run_test(size=(80, 24)) as pilot:
            await _press_on(app, pilot, name, "c")
            assert check.desired_state(name).state == "cutoff"
            assert veth in nft.cutoff_counters()
            assert app.query_one(BottleTable).get_cell(name, "state").plain == "cut off"
            await _press_on(app, pilot, name, "r")
            assert check.desired_state(name).state == "open"
            assert veth not in nft.cutoff_counters()
        audit = [(a.action, a.actor, a.result) for a in check.actions(bottle=name)]
        assert audit[-2:] == [("cutoff", "operator:test", "ok"), ("restore", "operator:test", "ok")]


async def test_kill_happens_only_after_confirmation(real_bottle: tuple[Path, str]) -> None:
    path, name = real_bottle
    with Ledger.open(path, create=False) as ledger, Ledger.open(path, create=False) as check:
        app = Dashboard(ledger, actor="operator:test")
        async with app.run_test(size=(80, 24)) as pilot:
            await _press_on(app, pilot, name, "k")
            assert isinstance(app.screen, ConfirmKill)
            await pilot.press("n")
            await app.workers.wait_for_complete()
            assert check.desired_state(name).state == "open"
            assert links.netns_exists(bottles.NETNS_PREFIX + name)
            await _press_on(app, pilot, name, "k", "y")
            assert check.desired_state(name).state == "killed"
            assert not links.netns_exists(bottles.NETNS_PREFIX + name)
            assert app.query_one(BottleTable).get_cell(name, "state").plain == "killed"
        assert [a.action for a in check.actions(bottle=name)][-1] == "kill"
