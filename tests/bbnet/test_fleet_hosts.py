"""Fleet budgets with real hosts: processes, each its own SQLite ledger, all on one fleet database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bbnet.fleet_lease import open_fleet
from bbnet.ledger import Ledger
from bbnet.model import Budget
from bbnet.names import Scope
from tests import pgserver
from tests.bbnet.test_fleet_lease import fleet_usage, usage_by_node
from tests.conftest import REPO, run_bbnet

WAIT_S = 60.0


@pytest.fixture
def fleet_url(pg_url: str) -> str:
    return pg_url


def fleet_budget(url: str, limit: int) -> None:
    with open_fleet(url) as f:
        f.set_budget(Budget(Scope.global_(), "anthropic", "tokens", limit, "total", "cli"))


def fleet_pool(url: str) -> tuple[int, int]:
    with open_fleet(url) as f:
        (pool,) = f.pools()
        return pool.used, pool.reserved


def fleet_leases(url: str) -> dict[str, dict[str, Any]]:
    with open_fleet(url) as f:
        return {str(r["node"]): r for r in f.fleet_leases()}


@contextmanager
def host(tmp_path: Path, url: str, node: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A host process (tests/fleet_host.py), started and ready; killed if still running after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet_host", "--db", str(tmp_path / f"{node}.db"), "--fleet", url,
         "--node", node, *args],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["ready"]
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=WAIT_S * 2)
    assert proc.returncode == 0
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


def wait_for(what: str, check: object) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_hosts_hammering_one_pool_never_overspend_it(tmp_path: Path, fleet_url: str) -> None:
    limit = 30_000  # 100 calls of 300 tokens: 4 hosts x 8 writers race for them
    fleet_budget(fleet_url, limit)
    args = ("--writers", "8", "--seconds", str(WAIT_S), "--slice", "1500", "--go", str(tmp_path / "go"))
    with (host(tmp_path, fleet_url, "h1", *args) as p1, host(tmp_path, fleet_url, "h2", *args) as p2,
          host(tmp_path, fleet_url, "h3", *args) as p3, host(tmp_path, fleet_url, "h4", *args) as p4):  # fmt: skip
        (tmp_path / "go").touch()  # each host holds its first slice by now
        results = [result(p) for p in (p1, p2, p3, p4)]
    used, reserved = fleet_pool(fleet_url)
    assert used <= limit  # max tokens known, usage within each reservation: no overshoot at all
    assert limit - used < 101  # the hosts stopped only once the pool was spent (less than a call left)
    assert used == sum(int(r["local_used"]) for r in results)  # settled exactly: nothing double-counted
    assert reserved == 0  # every slice went back at the clean stop
    assert all(int(r["calls"]) > 0 for r in results)  # every host got slices
    assert fleet_usage(fleet_url) == hosts_usage(tmp_path, "h1", "h2", "h3", "h4")  # shipped at the stop


def test_a_killed_hosts_slice_returns_when_its_lease_expires(tmp_path: Path, fleet_url: str) -> None:
    fleet_budget(fleet_url, 1_000_000)
    with host(tmp_path, fleet_url, "dead", "--writers", "1", "--seconds", "1", "--slice", "5000",
              "--lease-seconds", "2", "--hold") as doomed:  # fmt: skip
        wait_for("the host's calls", lambda: int(fleet_leases(fleet_url)["dead"]["consumed"]) > 0)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    lease = fleet_leases(fleet_url)["dead"]
    assert int(lease["granted"]) > int(lease["consumed"])  # it died holding a slice
    with host(tmp_path, fleet_url, "alive", "--writers", "1", "--seconds", str(WAIT_S), "--lease-seconds", "2",
              "--stop", str(tmp_path / "stop")) as survivor:  # fmt: skip
        wait_for("the dead host's lease reclaimed",
                 lambda: fleet_leases(fleet_url)["dead"]["granted"] == fleet_leases(fleet_url)["dead"]["consumed"])  # fmt: skip
        (tmp_path / "stop").touch()
        result(survivor)
    used, reserved = fleet_pool(fleet_url)
    assert reserved == 0
    with Ledger.open(tmp_path / "dead.db") as dead, Ledger.open(tmp_path / "alive.db") as alive:
        spent = [sum(p.used for p in ledger.pools()) for ledger in (dead, alive)]
    # what the dead host consumed after its last settlement is the overshoot, bounded by its slice
    assert spent[1] + int(lease["consumed"]) == used
    assert spent[0] - int(lease["consumed"]) <= int(lease["granted"]) - int(lease["consumed"])


def hosts_usage(tmp_path: Path, *nodes: str) -> dict[str, tuple[int, int, frozenset[str]]]:
    """The union of the hosts' own usage rows, per node (rows, tokens, keys)."""
    union: dict[str, tuple[int, int, frozenset[str]]] = {}
    for n in nodes:
        with Ledger.open(tmp_path / f"{n}.db") as ledger:
            union |= usage_by_node(ledger)
    assert sorted(union) == sorted(nodes)
    return union


def local_used(path: Path) -> int:
    with Ledger.open(path) as ledger:
        return sum(p.used for p in ledger.pools() if p.scope == "global")


def test_postgresql_stopped_mid_run_settlement_catches_up(tmp_path: Path) -> None:
    with pgserver.running() as server:  # its own server: this test stops it
        url = server.new_database()
        fleet_budget(url, 10**7)
        # slices big enough to serve for seconds with the fleet away: the test sees calls made meanwhile
        args = ("--writers", "2", "--seconds", str(WAIT_S * 2), "--slice", "2000000", "--settle-seconds", "0.2",
                "--stop", str(tmp_path / "stop"))  # fmt: skip
        with host(tmp_path, url, "h1", *args) as p1, host(tmp_path, url, "h2", *args) as p2:
            wait_for(
                "both hosts settled", lambda: all(int(r["consumed"]) > 0 for r in fleet_leases(url).values())
            )
            wait_for("rows shipped", lambda: sorted(fleet_usage(url)) == ["h1", "h2"])
            server.stop()
            down = [local_used(tmp_path / f"{n}.db") for n in ("h1", "h2")]
            # the hosts go on within the slices they hold: calls commit to their own ledgers
            wait_for("calls while the fleet is down",
                     lambda: all(local_used(tmp_path / f"{n}.db") > d for n, d in zip(("h1", "h2"), down, strict=True)))  # fmt: skip
            server.start()
            after = [local_used(tmp_path / f"{n}.db") for n in ("h1", "h2")]
            wait_for("settlement caught up",
                     lambda: all(int(fleet_leases(url)[n]["consumed"]) >= a for n, a in zip(("h1", "h2"), after, strict=True)))  # fmt: skip
            (tmp_path / "stop").touch()
            results = [result(p) for p in (p1, p2)]
        used, reserved = fleet_pool(url)
        assert used == sum(int(r["local_used"]) for r in results)  # every call counted once
        assert reserved == 0
        assert fleet_usage(url) == hosts_usage(tmp_path, "h1", "h2")  # every row shipped exactly once


def test_a_fleet_report_shows_each_hosts_totals(tmp_path: Path, fleet_url: str) -> None:
    fleet_budget(fleet_url, 10**7)
    args = ("--writers", "2", "--seconds", "2", "--slice", "5000")
    with host(tmp_path, fleet_url, "h1", *args) as p1, host(tmp_path, fleet_url, "h2", *args) as p2:
        for p in (p1, p2):
            result(p)
    done = run_bbnet("report", "usage", "--db", fleet_url, "--by", "node", "--format", "json")
    assert done.returncode == 0, done.stderr
    got = {r["node"]: (r["calls"], r["tokens"]) for r in json.loads(done.stdout)["rows"]}
    assert got == {n: v[:2] for n, v in hosts_usage(tmp_path, "h1", "h2").items()}
