"""Render bbnet's nftables table, and the deltas that change one bottle, as libnftables JSON.

Layout (DESIGN.md, "Enforcement"): one ``netdev`` table; per bottle veth an ``ingress`` base
chain (packets from the bottle) jumping to the shared ``from_bottle`` chain, and an ``egress``
base chain (packets toward the bottle) jumping to ``to_bottle``. Shared sets hold the state:

- ``addrs``     (veth . source address) a bottle may use — anything else is spoofed;
- ``allow_tcp`` / ``allow_udp`` (veth . address . port) a bottle may reach: its proxy and allow-list;
- ``cutoff``    veths cut off, with a counter per element; matched in both directions, so
  established flows stop too.

Every function returns a list of commands; :func:`document` wraps them for ``json_cmd``. Output is
deterministic: bottles are sorted by veth, set elements sorted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netrules.types import BottleNet, RulesError, veth_name

FAMILY = "netdev"
TABLE = "bbnet"
FROM_BOTTLE = "from_bottle"
TO_BOTTLE = "to_bottle"
CUTOFF = "cutoff"
ADDRS = "addrs"
ALLOW = {"tcp": "allow_tcp", "udp": "allow_udp"}
PRIORITY = 0
ND_TYPES = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert")

Command = dict[str, Any]

_TABLE = {"family": FAMILY, "name": TABLE}


def document(commands: list[Command]) -> dict[str, list[Command]]:
    return {"nftables": commands}


def _set(name: str, type_: str | list[str], *, counter: bool = False) -> Command:
    spec: dict[str, Any] = {"family": FAMILY, "table": TABLE, "name": name, "type": type_}
    if counter:
        spec["stmt"] = [{"counter": None}]
    return {"add": {"set": spec}}


def _elements(verb: str, name: str, elems: list[Any]) -> list[Command]:
    if not elems:
        return []
    return [{verb: {"element": {"family": FAMILY, "table": TABLE, "name": name, "elem": elems}}}]


def _rule(chain: str, *expr: Command) -> Command:
    return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": list(expr)}}}


def _match(left: Any, right: Any, op: str = "==") -> Command:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> Command:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> Command:
    return {"payload": {"protocol": protocol, "field": field}}


def _concat(*parts: Command) -> Command:
    return {"concat": list(parts)}


_DROP: Command = {"drop": None}
_ACCEPT: Command = {"accept": None}
_COUNTER: Command = {"counter": None}


def ingress_chain(veth: str) -> str:
    return f"in_{veth_name(veth)}"


def egress_chain(veth: str) -> str:
    return f"out_{veth_name(veth)}"


def _shared() -> list[Command]:
    """Sets and the two shared chains, with their rules."""
    commands = [
        _set(ADDRS, ["ifname", "ipv4_addr"]),
        _set(ALLOW["tcp"], ["ifname", "ipv4_addr", "inet_service"]),
        _set(ALLOW["udp"], ["ifname", "ipv4_addr", "inet_service"]),
        _set(CUTOFF, "ifname", counter=True),
        {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": FROM_BOTTLE}}},
        {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": TO_BOTTLE}}},
        _rule(FROM_BOTTLE, _match(_meta("iifname"), f"@{CUTOFF}"), _DROP),
        _rule(FROM_BOTTLE, _match(_meta("protocol"), "arp"), _ACCEPT),
        # neighbour discovery only: hop limit 255 means it cannot have been routed
        _rule(
            FROM_BOTTLE,
            _match(_payload("ip6", "hoplimit"), 255),
            _match(_payload("icmpv6", "type"), {"set": list(ND_TYPES)}),
            _ACCEPT,
        ),
        _rule(
            FROM_BOTTLE, _match(_concat(_meta("iifname"), _payload("ip", "saddr")), f"@{ADDRS}", "!="), _DROP
        ),
    ]
    for proto, set_name in ALLOW.items():
        commands.append(
            _rule(
                FROM_BOTTLE,
                _match(
                    _concat(_meta("iifname"), _payload("ip", "daddr"), _payload(proto, "dport")),
                    f"@{set_name}",
                ),
                _ACCEPT,
            )
        )
    commands.append(_rule(FROM_BOTTLE, _COUNTER, _DROP))
    commands.append(_rule(TO_BOTTLE, _match(_meta("oifname"), f"@{CUTOFF}"), _DROP))
    return commands


def _base_chain(name: str, hook: str, veth: str) -> Command:
    return {
        "add": {
            "chain": {
                "family": FAMILY,
                "table": TABLE,
                "name": name,
                "type": "filter",
                "hook": hook,
                "dev": veth,
                "prio": PRIORITY,
                "policy": "accept",
            }
        }
    }


def _chains(bottle: BottleNet) -> list[Command]:
    inbound, outbound = ingress_chain(bottle.veth), egress_chain(bottle.veth)
    return [
        _base_chain(inbound, "ingress", bottle.veth),
        _base_chain(outbound, "egress", bottle.veth),
    ]


def _chain_rules(bottle: BottleNet) -> list[Command]:
    return [
        _rule(ingress_chain(bottle.veth), {"jump": {"target": FROM_BOTTLE}}),
        _rule(egress_chain(bottle.veth), {"jump": {"target": TO_BOTTLE}}),
    ]


def _addr_elems(bottles: Iterable[BottleNet]) -> list[Any]:
    return [{"concat": [b.veth, str(a)]} for b in bottles for a in sorted(set(b.addresses))]


def _allow_elems(bottles: Iterable[BottleNet], proto: str) -> list[Any]:
    return [
        {"concat": [b.veth, str(e.address), e.port]} for b in bottles for e in b.reachable if e.proto == proto
    ]


def _bottle_elements(verb: str, bottles: list[BottleNet]) -> list[Command]:
    commands = _elements(verb, ADDRS, _addr_elems(bottles))
    for proto, set_name in ALLOW.items():
        commands += _elements(verb, set_name, _allow_elems(bottles, proto))
    return commands


def _sorted_unique(bottles: Iterable[BottleNet]) -> list[BottleNet]:
    by_veth: dict[str, BottleNet] = {}
    for bottle in bottles:
        if bottle.veth in by_veth and by_veth[bottle.veth] != bottle:
            raise RulesError(f"two bottles on one interface: {bottle.veth}")
        by_veth[bottle.veth] = bottle
    return [by_veth[v] for v in sorted(by_veth)]


def full_table(bottles: Iterable[BottleNet], cutoff: Iterable[str] = ()) -> list[Command]:
    """Create or replace the whole table in one transaction: ``add`` then ``delete`` makes sure a
    table exists to delete, so the batch works whether or not one was there, and touches nothing
    outside it."""
    ordered = _sorted_unique(bottles)
    commands: list[Command] = [
        {"add": {"table": _TABLE}},
        {"delete": {"table": _TABLE}},
        {"add": {"table": _TABLE}},
    ]
    commands += _shared()
    for bottle in ordered:
        commands += _chains(bottle)
    for bottle in ordered:
        commands += _chain_rules(bottle)
    commands += _bottle_elements("add", ordered)
    commands += _elements("add", CUTOFF, sorted({veth_name(v) for v in cutoff}))
    return commands


def cut(veth: str) -> list[Command]:
    """Cut one bottle off: one set element. Adding an element that exists is not an error."""
    return _elements("add", CUTOFF, [veth_name(veth)])


def restore(veth: str) -> list[Command]:
    """Undo :func:`cut`. The element is added first so the delete never fails on its absence."""
    return _elements("add", CUTOFF, [veth_name(veth)]) + _elements("delete", CUTOFF, [veth_name(veth)])


def add_bottle(bottle: BottleNet, *, cutoff: bool = False) -> list[Command]:
    """Add one bottle's chains and elements; re-adding the same bottle changes nothing."""
    flushes = [
        {"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}}
        for name in (ingress_chain(bottle.veth), egress_chain(bottle.veth))
    ]
    return (
        (cut(bottle.veth) if cutoff else [])
        + _chains(bottle)
        + flushes
        + _chain_rules(bottle)
        + _bottle_elements("add", [bottle])
    )


def remove_bottle(bottle: BottleNet) -> list[Command]:
    """Remove one bottle's chains and elements; works whether or not they are there."""
    chains = (ingress_chain(bottle.veth), egress_chain(bottle.veth))
    deletes: list[Command] = []
    for name in chains:
        deletes.append({"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
        deletes.append({"delete": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    return (
        _chains(bottle)
        + deletes
        + _bottle_elements("add", [bottle])
        + _bottle_elements("delete", [bottle])
        + restore(bottle.veth)
    )
