"""Network namespaces and veth pairs, through pyroute2.

Makes the netns and veth of the bottles bbnet creates, and finds the host end of an existing
bottle's veth: from inside its namespace the peer's link index names the host interface, which
must in turn point back at the namespace side. pyroute2 is imported inside each function: it
costs ~120 ms, which CLI commands that touch no link (`bbnet cutoff`) should not pay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from enforcer.errors import EnforcerError
from netrules.addressing import Lease

NETNS_DIR = Path("/var/run/netns")
BOTTLE_IFNAME = "eth0"


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def netns_exists(name: str) -> bool:
    return netns_path(name).exists()


def create_netns(name: str) -> None:
    from pyroute2 import netns

    if netns_exists(name):
        raise EnforcerError(f"network namespace {name} already exists")
    try:
        netns.create(name)
    except OSError as exc:
        raise EnforcerError(f"cannot create network namespace {name}: {exc.strerror or exc}") from None


def delete_netns(name: str) -> None:
    """Remove a named namespace; a missing one is not an error."""
    from pyroute2 import netns

    if netns_exists(name):
        netns.remove(name)


def link_index(ifname: str) -> int | None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def create_veth(host_ifname: str, ns_name: str, lease: Lease) -> None:
    """A veth pair: ``host_ifname`` on the host with the lease's host address, ``eth0`` in the
    namespace with the bottle address and a default route through the host end."""
    from pyroute2 import IPRoute, NetlinkError, NetNS

    if link_index(host_ifname) is not None:
        raise EnforcerError(f"interface {host_ifname} already exists")
    try:
        with IPRoute() as ipr:
            ipr.link(
                "add", ifname=host_ifname, kind="veth", peer={"ifname": BOTTLE_IFNAME, "net_ns_fd": ns_name}
            )
            index = ipr.link_lookup(ifname=host_ifname)[0]
            ipr.addr("add", index=index, address=str(lease.host.ip), prefixlen=lease.host.network.prefixlen)
            ipr.link("set", index=index, state="up")
        with NetNS(ns_name) as ns:
            for name in ("lo", BOTTLE_IFNAME):
                ns.link("set", index=ns.link_lookup(ifname=name)[0], state="up")
            inner = ns.link_lookup(ifname=BOTTLE_IFNAME)[0]
            ns.addr(
                "add", index=inner, address=str(lease.bottle.ip), prefixlen=lease.bottle.network.prefixlen
            )
            ns.route("add", dst="default", gateway=str(lease.host.ip))
    except NetlinkError as exc:
        raise EnforcerError(f"cannot set up veth {host_ifname}: {exc}") from None


def delete_link(ifname: str) -> None:
    """Delete an interface (a veth takes its peer with it); a missing one is not an error."""
    from pyroute2 import IPRoute

    index = link_index(ifname)
    if index is not None:
        with IPRoute() as ipr:
            ipr.link("del", index=index)


@dataclass(frozen=True)
class Attachment:
    """What was found about an existing namespace's link to the host."""

    host_veth: str
    addresses: tuple[IPv4Address, ...]
    gateway: IPv4Address | None


def _attrs(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


def attachment(ns_ref: str) -> Attachment:
    """Find the host end of the veth in the namespace ``ns_ref`` (a name in /var/run/netns or a
    path such as /proc/PID/ns/net), and the namespace side's IPv4 addresses and gateway."""
    from pyroute2 import IPRoute, NetlinkError, NetNS

    if not os.path.exists(ns_ref if "/" in ns_ref else netns_path(ns_ref)):
        raise EnforcerError(f"network namespace {ns_ref} does not exist")
    with NetNS(ns_ref) as ns:
        candidates = [
            link for link in ns.get_links() if _attrs(link, "IFLA_LINK") is not None and _is_veth(link)
        ]
        routes = ns.get_default_routes(family=2)
        gateway = routes[0].get_attr("RTA_GATEWAY") if routes else None
        route_oif = routes[0].get_attr("RTA_OIF") if routes else None
        if len(candidates) > 1 and route_oif is not None:
            candidates = [link for link in candidates if link["index"] == route_oif]
        if len(candidates) != 1:
            raise EnforcerError(f"namespace {ns_ref}: expected one veth to the host, found {len(candidates)}")
        inner = candidates[0]
        addresses = tuple(
            IPv4Address(a.get_attr("IFA_ADDRESS")) for a in ns.get_addr(family=2, index=inner["index"])
        )
    with IPRoute() as ipr:
        try:
            host = ipr.get_links(_attrs(inner, "IFLA_LINK"))[0]
        except NetlinkError:
            raise EnforcerError(f"namespace {ns_ref}: the veth's peer is not in the host namespace") from None
    if not _is_veth(host) or _attrs(host, "IFLA_LINK") != inner["index"]:
        raise EnforcerError(f"namespace {ns_ref}: the veth's peer is not in the host namespace")
    if not addresses:
        raise EnforcerError(f"namespace {ns_ref}: its veth has no IPv4 address")
    return Attachment(
        host_veth=_attrs(host, "IFLA_IFNAME"),
        addresses=addresses,
        gateway=IPv4Address(gateway) if gateway else None,
    )


def _is_veth(link: Any) -> bool:
    info = link.get_attr("IFLA_LINKINFO")
    return info is not None and info.get_attr("IFLA_INFO_KIND") == "veth"


def gateway_for(ifname: str) -> IPv4Address | None:
    """Where a bottle behind host interface ``ifname`` reaches the host: the first IPv4 address of
    the bridge it is a port of (a container's veth), else of the interface itself (a routed veth)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise EnforcerError(f"interface {ifname} does not exist")
        master = ipr.get_links(found[0])[0].get_attr("IFLA_MASTER")
        addresses = ipr.get_addr(family=2, index=master or found[0])
    return IPv4Address(addresses[0].get_attr("IFA_ADDRESS")) if addresses else None
