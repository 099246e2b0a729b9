"""Bottles made, adopted, frozen, killed and removed for real; bad input leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bbnet.ledger import Ledger
from enforcer import actions, bottles, cgroups, links
from enforcer.errors import EnforcerError
from enforcer.nft import Nft
from netrules import render
from netrules.addressing import lease_in
from netrules.types import bottle_network
from tests.enforcer.conftest import PROXY_PORT, TEST_POOL, unique
from tests.enforcer.netkit import EchoServer, can_connect, connect, echoes, ns

pytestmark = pytest.mark.root
FOREIGN = "inet bbtest_foreign"
# the count is replaced atomically, so a reader (or a freeze) never sees a half-written file
COUNTER_SCRIPT = (
    "import os, time\nn = 0\nwhile True:\n    n += 1\n    open({path!r} + '.tmp', 'w').write(str(n))\n"
    "    os.replace({path!r} + '.tmp', {path!r})\n    time.sleep(0.01)\n"
)


def _spawn_counter(bottle_name: str, ledger: Ledger, path: Path) -> subprocess.Popen[bytes]:
    bottle = bottles.get(ledger, bottle_name)
    proc = subprocess.Popen(
        [sys.executable, "-c", COUNTER_SCRIPT.format(path=str(path))],
        preexec_fn=bottles.enter(bottles.netns_file(bottle), bottle.cgroup),
    )
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def _count(path: Path) -> int:
    return int(path.read_text())


def _progress(path: Path, seconds: float) -> int:
    before = _count(path)
    time.sleep(seconds)
    return _count(path) - before


def _progresses(path: Path, timeout: float = 30) -> bool:
    """The counter moves on within ``timeout`` (however slow the machine)."""
    before, deadline = _count(path), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(path) > before:
            return True
        time.sleep(0.01)
    return False


def test_freeze_stops_progress_and_thaw_resumes(
    ledger: Ledger, make_bottle: Callable[..., str], tmp_path: Path
) -> None:
    name = make_bottle()
    counter = tmp_path / "count"
    proc = _spawn_counter(name, ledger, counter)
    group = Path(bottles.get(ledger, name).cgroup or "")
    try:
        assert proc.pid in cgroups.processes(group)
        assert actions.act(ledger, "freeze", name) == "frozen"
        assert "frozen 1" in (group / "cgroup.events").read_text()
        assert _progress(counter, 0.2) == 0
        assert actions.act(ledger, "thaw", name) == "cutoff"
        assert _progresses(counter)
        assert render.CUTOFF and bottles.get(ledger, name).veth in Nft().cutoff_counters()  # still cut off
    finally:
        proc.kill()
        proc.wait()


def test_kill_leaves_no_process_no_veth_no_netns_but_history(
    ledger: Ledger, make_bottle: Callable[..., str], tmp_path: Path
) -> None:
    name = make_bottle()
    bottle = bottles.get(ledger, name)
    proc = _spawn_counter(name, ledger, tmp_path / "count")
    assert actions.act(ledger, "kill", name, reason="budget") == "killed"
    assert proc.wait(timeout=5) == -9
    assert not Path(bottle.cgroup or "").exists()
    assert links.link_index(bottle.veth or "") is None
    assert not links.netns_exists(bottle.netns or "")
    assert actions.act(ledger, "kill", name) == "killed"  # twice is harmless
    assert [a.action for a in ledger.actions(bottle=name)] == ["create", "kill", "kill"]
    with pytest.raises(EnforcerError, match="was killed"):
        actions.act(ledger, "restore", name)
    bottles.remove(ledger, name)
    assert ledger.get_bottle(name) is None
    assert any(b.name == name for b in ledger.bottles(include_removed=True))


@pytest.fixture
def container(sysctl: None) -> Iterator[tuple[str, str, str, subprocess.Popen[bytes]]]:
    """A stand-in for a container: a netns whose veth is a port of a Linux bridge that carries the
    host's address for it, and a process inside. Yields (netns, host veth, bridge address, process)."""
    from pyroute2 import IPRoute, NetNS

    netns, veth, bridge = unique("bbtc-"), unique("bbtv"), unique("bbtbr")
    lease = lease_in(bottle_network("10.244.251.0/24"))
    links.create_netns(netns)
    proc = None
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=bridge, kind="bridge")
            br = ipr.link_lookup(ifname=bridge)[0]
            ipr.addr("add", index=br, address=str(lease.host.ip), prefixlen=24)
            ipr.link("set", index=br, state="up")
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": netns})
            port = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=port, master=br, state="up")
        with NetNS(netns) as inner:
            eth0 = inner.link_lookup(ifname="eth0")[0]
            inner.addr("add", index=eth0, address=str(lease.bottle.ip), prefixlen=24)
            inner.link("set", index=eth0, state="up")
            inner.route("add", dst="default", gateway=str(lease.host.ip))
        proc = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "60"])
        time.sleep(0.1)
        yield netns, veth, str(lease.host.ip), proc
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        links.delete_link(veth)
        links.delete_link(bridge)
        links.delete_netns(netns)


def test_register_by_pid_and_netns_on_a_bridge_port(
    ledger: Ledger, container: tuple[str, str, str, subprocess.Popen[bytes]]
) -> None:
    netns, veth, bridge_addr, proc = container
    by_pid = bottles.find(pid=proc.pid)
    by_netns = bottles.find(netns=netns)
    assert by_pid.veth == by_netns.veth == veth
    assert str(by_netns.proxy) == bridge_addr
    name = unique("tr")
    bottles.register(ledger, bottles.Launch(name, proxy_port=PROXY_PORT), by_netns)
    server = EchoServer(None, "0.0.0.0", PROXY_PORT)
    other = EchoServer(None, "0.0.0.0", PROXY_PORT + 1)
    try:
        assert can_connect(ns(netns), bridge_addr, PROXY_PORT)
        assert not can_connect(ns(netns), bridge_addr, PROXY_PORT + 1)
        flow = connect(ns(netns), bridge_addr, PROXY_PORT)
        assert flow is not None and echoes(flow, b"before", 1.0)
        actions.act(ledger, "cutoff", name)
        assert not echoes(flow, b"during", 0.05)
        actions.act(ledger, "restore", name)
        assert not echoes(flow, b"after", 3.0)  # the cut ended the flow: it is reset, not resumed
        flow.close()
        assert can_connect(ns(netns), bridge_addr, PROXY_PORT)  # new connections are welcome
        with pytest.raises(EnforcerError, match="has no cgroup"):
            actions.act(ledger, "freeze", name)
        bottles.remove(ledger, name)
        assert links.link_index(veth) is not None  # not ours to delete
    finally:
        server.close()
        other.close()


def _foreign() -> str:
    return subprocess.run(
        ["nft", "list", "table", *FOREIGN.split()], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def foreign_table() -> Iterator[str]:
    rules = (
        f"table {FOREIGN} {{\n set s {{ type ipv4_addr; elements = {{ 192.0.2.1 }}; }}\n"
        " chain c {\n  type filter hook input priority 10; policy accept;\n  ip saddr @s counter drop\n }\n}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield _foreign()
    finally:
        subprocess.run(["nft", "delete", "table", *FOREIGN.split()], check=True)


def test_other_tables_are_untouched_by_every_operation(
    ledger: Ledger, make_bottle: Callable[..., str], foreign_table: str
) -> None:
    name = make_bottle()
    assert _foreign() == foreign_table
    for action in ("cutoff", "restore", "freeze", "thaw", "restore"):
        actions.act(ledger, action, name)
        assert _foreign() == foreign_table, action
    other = make_bottle()
    actions.act(ledger, "kill", other)
    bottles.remove(ledger, name)
    assert _foreign() == foreign_table


def _nothing_of(name: str, ledger: Ledger) -> None:
    assert ledger.get_bottle(name) is None
    assert not links.netns_exists(bottles.NETNS_PREFIX + name)
    assert links.link_index(f"bb-{name}") is None
    assert not cgroups.group_for(cgroups.find_v2_mount(), name).exists()
    listing = Nft().read_table() or []
    assert not any(name in str(item) for item in listing)


def test_bad_input_is_one_line_and_makes_nothing(ledger: Ledger, make_bottle: Callable[..., str]) -> None:
    existing = make_bottle()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: actions.act(ledger, "cutoff", "nosuchbottle"), "unknown bottle 'nosuchbottle'"),
        (lambda: bottles.create(ledger, bottles.Launch(existing), pool=TEST_POOL), "already exists"),
        (lambda: bottles.create(ledger, bottles.Launch("tbad1"), addr="10.9.9.9/33"), "invalid IPv4 CIDR"),
        (lambda: bottles.create(ledger, bottles.Launch("tbad2"), pool="10.243.128.0/30"), "is exhausted"),
        (lambda: bottles.create(ledger, bottles.Launch("tbad3", budgets=("nosuch=5",))), "invalid budget"),
        (lambda: bottles.create(ledger, bottles.Launch("Bad_Name")), "invalid bottle name"),
    ]
    for call, message in cases:
        with pytest.raises((EnforcerError, ValueError), match=message) as info:
            call()
        assert "\n" not in str(info.value)
    for name in ("tbad1", "tbad2", "tbad3"):
        _nothing_of(name, ledger)


def test_a_failure_midway_rolls_back_everything_made(ledger: Ledger) -> None:
    name = unique("trb")
    group = cgroups.group_for(cgroups.find_v2_mount(), name)
    group.mkdir(parents=True)  # the cgroup step will fail after netns, veth and rules exist
    try:
        with pytest.raises(EnforcerError, match="already exists"):
            bottles.create(ledger, bottles.Launch(name), pool=TEST_POOL)
    finally:
        group.rmdir()
    _nothing_of(name, ledger)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd(), timeout=30
    )


def test_no_root_and_missing_libnftables_are_one_line_errors(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    create = (
        "from bbnet.ledger import Ledger; from enforcer import bottles; from enforcer.errors import EnforcerError\n"
        f"l = Ledger.open({str(db)!r})\n{{drop}}"
        "try:\n    bottles.create(l, bottles.Launch('tnoroot'))\nexcept EnforcerError as e:\n    print(e)\n"
    )
    as_nobody = _run(create.format(drop="import os; os.seteuid(65534)\n"))
    assert as_nobody.stdout.strip().endswith(
        "this needs root: bottles are network namespaces, veths and nftables rules"
    )
    missing = _run("import sys; sys.modules['nftables'] = None\n" + create.format(drop=""))
    assert missing.stdout.strip().startswith("libnftables is not available")
    assert not links.netns_exists("bbnet-tnoroot")
