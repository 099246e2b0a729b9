"""Addresses for the bottles bbnet makes: one small subnet per bottle, carved from a pool.

A bottle's subnet holds two addresses: the host end of the veth (the bottle's gateway, where the
meter proxy listens) and the bottle end. IPv4 only: the ruleset drops every IPv6 packet from a
bottle except neighbour discovery, so IPv6 can neither leak nor bypass the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from netrules.types import RulesError, bottle_network

SUBNET_PREFIX = 30


@dataclass(frozen=True)
class Lease:
    """A bottle's subnet: the host end's and the bottle end's addresses in it."""

    host: IPv4Interface
    bottle: IPv4Interface

    @property
    def network(self) -> IPv4Network:
        return self.bottle.network


def lease_in(network: IPv4Network) -> Lease:
    """The first two usable addresses of ``network``: host end, then bottle end."""
    if network.prefixlen > SUBNET_PREFIX:
        raise RulesError(f"subnet {network} is too small: need /{SUBNET_PREFIX} or larger")
    first = network.network_address + 1
    return Lease(
        IPv4Interface(f"{first}/{network.prefixlen}"), IPv4Interface(f"{first + 1}/{network.prefixlen}")
    )


def lease_for_address(text: str) -> Lease:
    """The lease for an explicit bottle address (``--addr 10.9.0.2/30``); the host end takes the
    first other usable address of its subnet."""
    try:
        bottle = IPv4Interface(text)
    except ValueError as exc:
        raise RulesError(f"invalid IPv4 CIDR {text!r}: {exc}") from None
    network = bottle.network
    if network.prefixlen > SUBNET_PREFIX:
        raise RulesError(f"invalid address {text!r}: need a /{SUBNET_PREFIX} or larger subnet")
    if bottle.ip in (network.network_address, network.broadcast_address):
        raise RulesError(f"invalid address {text!r}: that is the subnet's network or broadcast address")
    first = network.network_address + 1
    host = first if first != bottle.ip else first + 1
    return Lease(IPv4Interface(f"{host}/{network.prefixlen}"), bottle)


def allocate(pool_text: str, taken: Iterable[IPv4Network]) -> Lease:
    """The first /30 of the pool that overlaps no taken subnet."""
    pool = bottle_network(pool_text)
    if pool.prefixlen > SUBNET_PREFIX:
        raise RulesError(f"address pool {pool} is smaller than one /{SUBNET_PREFIX}")
    used = [n for n in taken if n.overlaps(pool)]
    small = {n.supernet(new_prefix=SUBNET_PREFIX) for n in used if n.prefixlen >= SUBNET_PREFIX}
    wide = [n for n in used if n.prefixlen < SUBNET_PREFIX]
    for candidate in pool.subnets(new_prefix=SUBNET_PREFIX):
        if candidate not in small and not any(candidate.overlaps(n) for n in wide):
            return lease_in(candidate)
    raise RulesError(f"address pool {pool} is exhausted ({len(used)} subnets in use)")


def check_free(lease: Lease, taken: Iterable[IPv4Network]) -> Lease:
    """``lease`` if its subnet overlaps none taken, else raise naming the clash."""
    for network in taken:
        if lease.network.overlaps(network):
            raise RulesError(f"address {lease.bottle} overlaps {network}, already used by a bottle")
    return lease
