"""The demo's footprint on the host: what must be absent before it starts, and removing every
namespace, veth, cgroup and nftables table it made when it ends (however it ends).

The demo refuses to run when bbnet's nftables table is already loaded: its `bbnet serve`
reconciles the whole table from the demo's private ledger, which would wipe another
installation's rules. With the table absent at the start, the table at the end is the demo's own
and is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from demo.procs import DemoError


@dataclass(frozen=True)
class Footprint:
    """Where one demo bottle lives on the host."""

    bottle: str
    netns: str
    veth: str
    cgroup: Path


def footprints(names: Iterable[str]) -> list[Footprint]:
    from enforcer import cgroups
    from enforcer.bottles import NETNS_PREFIX
    from netrules.types import host_veth_for

    root = cgroups.find_v2_mount()
    return [Footprint(n, NETNS_PREFIX + n, host_veth_for(n), cgroups.group_for(root, n)) for n in names]


def clashing_addresses(pool: str, addresses: Iterable[str]) -> list[str]:
    """Host addresses (CIDR) that overlap the demo's address pool (pure)."""
    net = IPv4Network(pool)
    return sorted(a for a in addresses if IPv4Interface(a).network.overlaps(net))


def _host_ipv4_addresses() -> list[str]:
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out) for a in link.get("addr_info", [])]


def preflight(names: Iterable[str], pool: str) -> None:
    """Raise DemoError unless the host is free for the demo: root, no bbnet table loaded, nothing
    left by an earlier run under the demo's names, the demo's address pool unused."""
    from enforcer import links
    from enforcer.nft import Nft

    if os.geteuid() != 0:
        raise DemoError(
            "the demo makes network namespaces, veths, cgroups and nftables rules: run it as root"
        )
    if Nft().installed():
        raise DemoError(
            "nftables table 'netdev bbnet' is already loaded (a bbnet installation or a test is running): "
            "the demo runs its own controller, which would replace that table, so it will not run. "
            "Stop bbnet (systemctl stop bbnet), delete its table if no bottle needs it "
            "(nft delete table netdev bbnet), and run the demo again"
        )
    leftovers = []
    for f in footprints(names):
        if links.netns_exists(f.netns):
            leftovers.append(f"network namespace {f.netns} (ip netns del {f.netns})")
        if links.link_index(f.veth) is not None:
            leftovers.append(f"interface {f.veth} (ip link del {f.veth})")
        if f.cgroup.exists():
            leftovers.append(f"cgroup {f.cgroup} (rmdir {f.cgroup})")
    if leftovers:
        raise DemoError("left over from an earlier demo, remove first: " + "; ".join(leftovers))
    clash = clashing_addresses(pool, _host_ipv4_addresses())
    if clash:
        raise DemoError(f"the demo's address pool {pool} is in use on this host: {', '.join(clash)}")


def cgroup_parent_exists() -> bool:
    from enforcer import cgroups

    return (cgroups.find_v2_mount() / cgroups.GROUP_DIR).exists()


def teardown(db: Path, names: Iterable[str], *, remove_cgroup_parent: bool) -> list[str]:
    """Remove every bottle of the demo's ledger, then anything under the demo's names the ledger
    did not know (an interrupted create), then bbnet's table. Returns what could not be removed."""
    from bbnet.ledger import Ledger
    from enforcer import bottles, cgroups, links
    from enforcer.errors import EnforcerError
    from enforcer.nft import Nft
    from netrules import render

    failed: list[str] = []
    if db.exists():
        with Ledger.open(db, create=False) as ledger:
            for b in ledger.bottles():
                try:
                    bottles.remove(ledger, b.name)
                except EnforcerError as e:
                    failed.append(f"bottle {b.name}: {e}")
    for f in footprints(names):
        for what, undo in (("cgroup", lambda f=f: cgroups.remove(f.cgroup)),
                           ("veth", lambda f=f: links.delete_link(f.veth)),
                           ("netns", lambda f=f: links.delete_netns(f.netns))):  # fmt: skip
            try:
                undo()
            except (EnforcerError, OSError) as e:
                failed.append(f"{what} of {f.bottle}: {e}")
    nft = Nft()
    if nft.installed():
        try:
            nft.run([{"delete": {"table": {"family": render.FAMILY, "name": render.TABLE}}}])
        except EnforcerError as e:
            failed.append(f"nftables table: {e}")
    if remove_cgroup_parent:
        with contextlib.suppress(OSError):  # not empty: something else made a bottle meanwhile
            (cgroups.find_v2_mount() / cgroups.GROUP_DIR).rmdir()
    return failed
