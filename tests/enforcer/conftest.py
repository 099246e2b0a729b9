"""Fixtures for the enforcer's root tests: a ledger, uniquely named bottles, a stand-in for the
internet, and cleanup of every namespace, veth, cgroup and table the tests make."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bbnet.ledger import Ledger
from enforcer import bottles, cgroups, links
from enforcer.nft import Nft
from netrules import render
from netrules.addressing import lease_in
from netrules.types import bottle_network

TEST_POOL = "10.243.128.0/20"
INTERNET_NET = "10.244.250.0/30"
PROXY_PORT = 18080  # not 8080: a real meter may be listening there


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as opened:
        yield opened
        for bottle in opened.bottles():
            with contextlib.suppress(Exception):
                bottles.remove(opened, bottle.name)


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Every test starts and ends without bbnet's table; namespaces and veths are removed by the
    fixtures that made them."""
    yield
    with contextlib.suppress(Exception):
        Nft().run([{"delete": {"table": {"family": render.FAMILY, "name": render.TABLE}}}])


@pytest.fixture
def sysctl() -> Iterator[None]:
    """Routing between namespaces on (so only our rules can be what stops a packet), restored after."""
    keys = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter")
    before = {k: subprocess.run(["sysctl", "-n", k], capture_output=True, text=True, check=True).stdout.strip()
              for k in keys}  # fmt: skip
    wanted = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
    }
    for k, v in wanted.items():
        subprocess.run(["sysctl", "-q", "-w", f"{k}={v}"], check=True)
    yield
    for k, v in before.items():
        subprocess.run(["sysctl", "-q", "-w", f"{k}={v}"], check=True)


@pytest.fixture
def internet(sysctl: None) -> Iterator[tuple[str, str]]:
    """A namespace standing in for the internet, routed from the host: (netns name, address)."""
    name, veth = unique("bbtnet-"), unique("bbti")
    lease = lease_in(bottle_network(INTERNET_NET))
    links.create_netns(name)
    try:
        links.create_veth(veth, name, lease)
        yield name, str(lease.bottle.ip)
    finally:
        links.delete_link(veth)
        links.delete_netns(name)


@pytest.fixture
def make_bottle(ledger: Ledger) -> Iterator[object]:
    made: list[str] = []

    def make(prefix: str = "tb", **launch: object) -> str:
        name = unique(prefix)
        bottles.create(ledger, bottles.Launch(name, proxy_port=PROXY_PORT, **launch), pool=TEST_POOL)  # type: ignore[arg-type]
        made.append(name)
        return name

    yield make
    for name in made:
        remove_test_bottle(ledger, name)


def remove_test_bottle(ledger: Ledger, name: str) -> None:
    """Remove a bottle a test made, and whatever of it a failed test left behind; never raises."""
    if ledger.get_bottle(name) is not None:
        with contextlib.suppress(Exception):
            bottles.remove(ledger, name)
    with contextlib.suppress(Exception):
        links.delete_netns(bottles.NETNS_PREFIX + name)
    with contextlib.suppress(Exception):
        cgroups.remove(cgroups.group_for(cgroups.find_v2_mount(), name))
