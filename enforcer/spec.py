"""What the kernel needs to know about a bottle, derived from its ledger row (pure).

The ledger's ``Bottle`` keeps two enforcement details in its labels: ``proxy`` (the meter the
bottle must go through, ``tcp:ADDRESS:PORT``) and ``allow`` (the policy's extra endpoints,
space-separated). Everything here is validated again on the way out, so a hand-edited ledger row
cannot smuggle anything into a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from bbnet.model import Bottle
from netrules.types import BottleNet, Endpoint, RulesError

PROXY_LABEL = "proxy"
ALLOW_LABEL = "allow"


@dataclass(frozen=True)
class KernelBottle:
    """A bottle as the kernel sees it: rules, cgroup, and what bbnet made (and may remove)."""

    name: str
    net: BottleNet | None  # None: no veth known yet
    cgroup: Path | None
    netns: str | None
    managed: bool


def parse_allow(text: str) -> tuple[Endpoint, ...]:
    return tuple(Endpoint.parse(part) for part in text.split())


def allow_text(endpoints: tuple[Endpoint, ...]) -> str:
    return " ".join(str(e) for e in sorted(set(endpoints)))


def bottle_net(bottle: Bottle) -> BottleNet | None:
    if bottle.veth is None:
        return None
    proxy = bottle.labels.get(PROXY_LABEL)
    if proxy is None:
        raise RulesError(f"bottle {bottle.name}: no proxy endpoint recorded (label {PROXY_LABEL!r})")
    try:
        addresses = tuple(IPv4Interface(a).ip for a in bottle.addresses)
    except ValueError as exc:
        raise RulesError(f"bottle {bottle.name}: bad address in the ledger: {exc}") from None
    return BottleNet(
        bottle.veth, addresses, Endpoint.parse(proxy), parse_allow(bottle.labels.get(ALLOW_LABEL, ""))
    )


def kernel_bottle(bottle: Bottle) -> KernelBottle:
    return KernelBottle(
        name=bottle.name,
        net=bottle_net(bottle),
        cgroup=Path(bottle.cgroup) if bottle.cgroup else None,
        netns=bottle.netns,
        managed=bottle.managed,
    )


def cut_veths(bottles: list[KernelBottle], states: dict[str, str]) -> list[str]:
    """The veths whose desired state keeps them cut off (anything but ``open``)."""
    return sorted(b.net.veth for b in bottles if b.net is not None and states.get(b.name, "open") != "open")
