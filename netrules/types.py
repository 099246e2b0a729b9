"""Validated plain data the ruleset is rendered from.

Every string that reaches the nftables JSON goes through a validator here, so a rendered ruleset
can only contain interface names from a safe charset, IPv4 addresses and integers: nothing a
bottle name, a label or a CLI argument could use to inject a rule.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from bbnet.names import BOTTLE_NAME_RE

IFNAMSIZ = 15  # usable characters in a Linux interface name
VETH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
VETH_PREFIX = "bb-"
PROTOCOLS = ("tcp", "udp")


class RulesError(ValueError):
    """Input the ruleset cannot be rendered from; the message names what was wrong."""


def veth_name(value: str) -> str:
    """Return ``value`` if it is a usable host interface name, else raise."""
    if not isinstance(value, str) or not VETH_RE.fullmatch(value):
        raise RulesError(
            f"invalid interface name {value!r}: use 1-{IFNAMSIZ} characters, letters, digits, "
            "'_', '.' and '-', starting with a letter or digit"
        )
    return value


def host_veth_for(bottle: str) -> str:
    """The host end's interface name for a bottle bbnet makes.

    ``bb-<name>`` when it fits IFNAMSIZ; otherwise ``bb-<first 6>_<5 hash chars>``. The ``_`` is
    never in a bottle name, so a hashed name cannot equal a short one.
    """
    if not isinstance(bottle, str) or not BOTTLE_NAME_RE.fullmatch(bottle):
        raise RulesError(f"invalid bottle name {bottle!r}")
    short = VETH_PREFIX + bottle
    if len(short) <= IFNAMSIZ:
        return short
    digest = base64.b32encode(hashlib.sha256(bottle.encode()).digest()).decode().lower()
    return veth_name(f"{VETH_PREFIX}{bottle[:6]}_{digest[:5]}")


def _port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise RulesError(f"invalid port {value!r}: expected an integer 1-65535")
    return value


def _ipv4(value: object) -> IPv4Address:
    if not isinstance(value, IPv4Address):
        raise RulesError(f"invalid address {value!r}: expected an IPv4 address")
    return value


@dataclass(frozen=True, order=True)
class Endpoint:
    """Somewhere a bottle may send packets: an IPv4 address, a protocol and a port."""

    address: IPv4Address
    proto: Literal["tcp", "udp"]
    port: int

    def __post_init__(self) -> None:
        _ipv4(self.address)
        if self.proto not in PROTOCOLS:
            raise RulesError(f"invalid protocol {self.proto!r}: expected tcp or udp")
        _port(self.port)

    def __str__(self) -> str:
        return f"{self.proto}:{self.address}:{self.port}"

    @staticmethod
    def parse(text: str) -> Endpoint:
        """Parse ``PROTO:ADDRESS:PORT``, e.g. ``tcp:10.0.0.5:443`` (proto defaults to tcp)."""
        parts = text.split(":")
        if len(parts) == 2:
            parts = ["tcp", *parts]
        if len(parts) != 3 or parts[0] not in PROTOCOLS or not parts[2].isdigit():
            raise RulesError(f"invalid endpoint {text!r}: expected [tcp|udp:]IPV4:PORT")
        try:
            address = IPv4Address(parts[1])
        except ValueError:
            raise RulesError(f"invalid endpoint {text!r}: {parts[1]!r} is not an IPv4 address") from None
        proto: Literal["tcp", "udp"] = "tcp" if parts[0] == "tcp" else "udp"
        return Endpoint(address, proto, int(parts[2]))


@dataclass(frozen=True)
class BottleNet:
    """What the ruleset needs to know about one bottle.

    ``veth`` is the host end; ``addresses`` the sources the bottle may use; ``proxy`` the meter
    it must go through; ``allow`` whatever else its policy lets it reach directly.
    """

    veth: str
    addresses: tuple[IPv4Address, ...]
    proxy: Endpoint
    allow: tuple[Endpoint, ...] = ()

    def __post_init__(self) -> None:
        veth_name(self.veth)
        if not isinstance(self.addresses, tuple) or not self.addresses:
            raise RulesError(f"bottle on {self.veth}: needs at least one IPv4 address")
        for address in self.addresses:
            _ipv4(address)
        if not isinstance(self.proxy, Endpoint) or self.proxy.proto != "tcp":
            raise RulesError(f"bottle on {self.veth}: the proxy must be a tcp Endpoint")
        if not isinstance(self.allow, tuple) or not all(isinstance(e, Endpoint) for e in self.allow):
            raise RulesError(f"bottle on {self.veth}: allow must be a tuple of Endpoints")

    @property
    def reachable(self) -> tuple[Endpoint, ...]:
        """The proxy and the allow-list, sorted and without duplicates."""
        return tuple(sorted({self.proxy, *self.allow}))


def bottle_network(text: str) -> IPv4Network:
    """Parse a CIDR such as ``10.243.0.0/16``; host bits must be zero."""
    try:
        return IPv4Network(text)
    except ValueError as exc:
        raise RulesError(f"invalid IPv4 CIDR {text!r}: {exc}") from None
