"""Real packets through real rules: proxy-only egress, anti-spoofing, cutoff of established flows."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from ipaddress import IPv4Interface

import pytest

from bbnet.ledger import Ledger
from enforcer import actions
from enforcer.nft import Nft
from tests.enforcer.conftest import PROXY_PORT
from tests.enforcer.netkit import EchoServer, can_connect, connect, echoes, in_netns, ns, udp_sender

pytestmark = pytest.mark.root
OTHER_PORT = PROXY_PORT + 1
UDP_PORT = 5353


def _addrs(ledger: Ledger, name: str) -> tuple[str, str, str]:
    """(netns path, bottle address, host-end proxy address) of a bottle."""
    bottle = ledger.get_bottle(name)
    assert bottle is not None and bottle.netns is not None
    proxy = bottle.labels["proxy"].split(":")[1]
    return ns(bottle.netns), str(IPv4Interface(bottle.addresses[0]).ip), proxy


def test_only_the_proxy_is_reachable(
    ledger: Ledger, make_bottle: Callable[..., str], internet: tuple[str, str]
) -> None:
    internet_ns, internet_addr = internet
    a = make_bottle()
    b = make_bottle(allow=(f"tcp:{internet_addr}:{PROXY_PORT}",))
    a_ns, a_addr, a_proxy = _addrs(ledger, a)
    b_ns, b_addr, _ = _addrs(ledger, b)
    servers = [
        EchoServer(None, "0.0.0.0", PROXY_PORT),
        EchoServer(None, "0.0.0.0", OTHER_PORT),
        EchoServer(ns(internet_ns), "0.0.0.0", PROXY_PORT),
        EchoServer(b_ns, "0.0.0.0", PROXY_PORT),
    ]
    try:
        assert can_connect(a_ns, a_proxy, PROXY_PORT)
        assert not can_connect(a_ns, a_proxy, OTHER_PORT)
        assert not can_connect(a_ns, b_addr, PROXY_PORT)
        assert not can_connect(a_ns, internet_addr, PROXY_PORT)
        # the same route works for a bottle whose policy allows it: the rules, not routing, said no
        assert can_connect(b_ns, internet_addr, PROXY_PORT)
        assert not can_connect(b_ns, a_addr, PROXY_PORT)
    finally:
        for s in servers:
            s.close()


def test_spoofed_source_never_arrives(
    ledger: Ledger, make_bottle: Callable[..., str], internet: tuple[str, str]
) -> None:
    internet_ns, internet_addr = internet
    receiver = in_netns(ns(internet_ns), lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    receiver.bind(("0.0.0.0", UDP_PORT))
    receiver.settimeout(0.5)
    a = make_bottle(allow=(f"udp:{internet_addr}:{UDP_PORT}",))
    b = make_bottle()
    a_ns, a_addr, _ = _addrs(ledger, a)
    _, b_addr, _ = _addrs(ledger, b)
    honest, spoofing = udp_sender(a_ns), udp_sender(a_ns, source=b_addr)
    try:
        honest.sendto(b"honest", (internet_addr, UDP_PORT))
        data, source = receiver.recvfrom(100)
        assert (data, source[0]) == (b"honest", a_addr)
        for _ in range(3):
            spoofing.sendto(b"spoofed", (internet_addr, UDP_PORT))
        with pytest.raises(TimeoutError):
            receiver.recvfrom(100)
    finally:
        for s in (receiver, honest, spoofing):
            s.close()


def test_cutoff_ends_an_established_flow_and_restore_lets_new_ones_in(
    ledger: Ledger, make_bottle: Callable[..., str]
) -> None:
    a, b = make_bottle(), make_bottle()
    a_ns, _, a_proxy = _addrs(ledger, a)
    b_ns, _, b_proxy = _addrs(ledger, b)
    server = EchoServer(None, "0.0.0.0", PROXY_PORT)
    flow_a, flow_b = connect(a_ns, a_proxy, PROXY_PORT), connect(b_ns, b_proxy, PROXY_PORT)
    try:
        assert flow_a is not None and flow_b is not None
        assert echoes(flow_a, b"before", 1.0)
        actions.act(ledger, "cutoff", a, reason="test")
        assert not echoes(flow_a, b"during", 0.05)  # nothing comes back: dropped in the kernel at once
        assert not can_connect(a_ns, a_proxy, PROXY_PORT)
        assert echoes(flow_b, b"neighbour", 1.0)  # the other bottle is untouched
        assert Nft().cutoff_counters()[_veth(ledger, a)][0] > 0
        # the host's end of the flow is gone (the meter would see its call fail and stop upstream)
        assert not server.peers_of(_address(ledger, a)) and server.peers_of(_address(ledger, b))
        actions.act(ledger, "cutoff", a, reason="twice is harmless")
        actions.act(ledger, "restore", a)
        # what the bottle's kernel retransmits after the restore meets a reset, not a live socket
        with pytest.raises(ConnectionResetError):
            flow_a.settimeout(3.0)
            flow_a.sendall(b"after")
            flow_a.recv(4096)
        assert can_connect(a_ns, a_proxy, PROXY_PORT)
        assert echoes(flow_b, b"neighbour still", 1.0)
        audit = ledger.actions(bottle=a)
        assert [x.action for x in audit] == ["create", "cutoff", "cutoff", "restore"]
        # the first cut closed the one connection; the second found none left
        assert [json.loads(x.detail or "{}").get("connections_closed") for x in audit[1:3]] == [1, None]
        assert ledger.desired_state(a).state == "open"
    finally:
        for flow in (flow_a, flow_b):
            if flow is not None:
                flow.close()
        server.close()


def _address(ledger: Ledger, name: str) -> str:
    bottle = ledger.get_bottle(name)
    assert bottle is not None
    return str(IPv4Interface(bottle.addresses[0]).ip)


def _veth(ledger: Ledger, name: str) -> str:
    bottle = ledger.get_bottle(name)
    assert bottle is not None and bottle.veth is not None
    return bottle.veth
