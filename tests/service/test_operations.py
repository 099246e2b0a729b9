"""A running `bbnet serve`: drift in the kernel is repaired and audited, a second instance is
refused, and `bbnet doctor` is green against it. (How fast a repair is, is bench/service_bench.py's
figure; these tests wait for the repair with a generous deadline.)"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BBNET
from tests.service.harness import (
    BottleInfo,
    Service,
    actions,
    create_bottle,
    cut_in_kernel,
    eventually,
    probe,
    remove_table,
)

pytestmark = pytest.mark.root
REPAIR_SECONDS = 30.0  # a deadline, not a figure: the repair itself takes ~0.2 s here


@pytest.fixture(scope="module")
def bottles(service: Service) -> Iterator[tuple[BottleInfo, BottleInfo]]:
    """``cut`` is cut off by the operator, ``open`` is open: drift must not swap them."""
    cut, opened = create_bottle(service, "drcut"), create_bottle(service, "dropen")
    service.ok("cutoff", cut.name)
    yield cut, opened


def repair_rows(service: Service, since: int) -> list[Any]:
    return [a for a in actions(service, action="drift-repair") if a.id > since]


def repaired(service: Service, cut: BottleInfo, since: int) -> None:
    eventually(lambda: cut_in_kernel() == {cut.veth}, REPAIR_SECONDS, "bbnet's table back as it was")
    rows = eventually(lambda: repair_rows(service, since), REPAIR_SECONDS, "a drift-repair actions row")
    assert rows[0].actor == "controller" and rows[0].result == "ok"


def last_action(service: Service) -> int:
    return max((a.id for a in actions(service)), default=0)


def test_deleted_table_is_back_within_a_second(
    service: Service, bottles: tuple[BottleInfo, BottleInfo]
) -> None:
    cut, opened = bottles
    since = last_action(service)
    remove_table()
    repaired(service, cut, since)
    assert "missing" in next(a for a in actions(service, action="drift-repair") if a.id > since).reason
    # the repaired table is the real one: the open bottle reaches the meter, the cut one does not
    assert probe(service, opened, "tcp", str(opened.proxy.address), str(opened.proxy.port))["connected"]
    assert not probe(service, cut, "tcp", str(cut.proxy.address), str(cut.proxy.port))["connected"]


def test_altered_cutoff_set_is_repaired(service: Service, bottles: tuple[BottleInfo, BottleInfo]) -> None:
    cut, _ = bottles
    since = last_action(service)
    subprocess.run(["nft", "delete", "element", "netdev", "bbnet", "cutoff", f"{{ {cut.veth} }}"], check=True)
    repaired(service, cut, since)  # the row proves the element was gone (it may be back already)
    assert (
        "cutoff set holds []"
        in next(a for a in actions(service, action="drift-repair") if a.id > since).reason
    )


def thaw_until_repaired(service: Service, cgroup: Path) -> list[Any]:
    """Thaw the frozen cgroup behind bbnet's back until the controller repairs it as drift.

    A thaw that lands before the controller has taken the freeze in is re-frozen as a desired-state
    change, with no drift row: then thaw again. No guess at how long the controller takes."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        since = last_action(service)
        (cgroup / "cgroup.freeze").write_text("0")
        eventually(lambda: "frozen 1" in (cgroup / "cgroup.events").read_text(), REPAIR_SECONDS,
                   "the bottle frozen again")  # fmt: skip
        with contextlib.suppress(AssertionError):
            return eventually(partial(repair_rows, service, since), 10, "a drift-repair actions row")
    raise AssertionError("the controller never repaired a thaw as drift")


def test_thawed_frozen_bottle_is_frozen_again(
    service: Service, bottles: tuple[BottleInfo, BottleInfo]
) -> None:
    _, opened = bottles
    sleeper = subprocess.Popen([BBNET, "bottle", "exec", opened.name, "--", "sleep", "60"],
                               env={"BBNET_DB": str(service.db), "PATH": "/usr/bin:/bin"})  # fmt: skip
    try:
        eventually(lambda: (Path(opened.cgroup) / "cgroup.procs").read_text().strip(), 30, "a process in it")
        service.ok("freeze", opened.name)
        events = Path(opened.cgroup) / "cgroup.events"
        assert "frozen 1" in events.read_text()
        rows = thaw_until_repaired(service, Path(opened.cgroup))
        assert rows[0].reason == "a frozen bottle was thawed"
    finally:
        service.ok("restore", opened.name)
        sleeper.kill()
        sleeper.wait(timeout=10)


def test_second_serve_is_refused(service: Service) -> None:
    second = Service(service.workdir, service.sim_url)
    done = subprocess.run(second.argv(), capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 2
    assert service.process is not None and service.process.poll() is None
    assert done.stderr.strip().splitlines() == [
        f"bbnet serve: error: another bbnet serve is running (pid {service.process.pid}, lock {service.lock})"
    ]


def test_doctor_is_green_against_the_running_service(
    service: Service, bottles: tuple[BottleInfo, BottleInfo]
) -> None:
    done = service.bbnet("doctor", "--json", "--db", str(service.db), "--settings", str(service.settings),
                         "--confdir", str(service.confdir), "--proxy", f"127.0.0.1:{service.port}")  # fmt: skip
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert done.returncode == 0, checks
    assert {name: c["status"] for name, c in checks.items()} == dict.fromkeys(checks, "ok"), checks
    assert set(checks) >= {
        "root",
        "nftables",
        "netns",
        "cgroup v2",
        "connections",
        "ledger",
        "settings",
        "proxy",
        "probe",
    }


def test_doctor_fails_when_the_service_is_not_listening(service: Service) -> None:
    done = service.bbnet("doctor", "--json", "--db", str(service.db), "--settings", str(service.settings),
                         "--confdir", str(service.confdir), "--proxy", "127.0.0.1:1")  # fmt: skip
    assert done.returncode == 1
    proxy = next(c for c in json.loads(done.stdout) if c["name"] == "proxy")
    assert proxy["status"] == "fail" and "is bbnet serve running?" in proxy["detail"]
