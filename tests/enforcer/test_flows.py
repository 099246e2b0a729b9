"""The pure part of ending a bottle's connections: the ``ss`` filter (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from enforcer.flows import end_flows, peer_filter


def test_peer_filter_matches_any_of_the_addresses() -> None:
    assert peer_filter([IPv4Address("10.243.0.2")]) == ["(", "dst", "10.243.0.2", ")"]
    assert peer_filter([IPv4Address("10.243.0.2"), IPv4Address("10.243.0.6")]) == [
        "(", "dst", "10.243.0.2", "or", "dst", "10.243.0.6", ")",
    ]  # fmt: skip


@pytest.mark.parametrize("bad", ["10.243.0.2 or dst 0.0.0.0/0", "10.243.0.2", 167968770])
def test_only_ipv4_addresses_reach_the_command_line(bad: object) -> None:
    with pytest.raises(TypeError, match="not an IPv4 address"):
        peer_filter([bad])  # type: ignore[list-item]


def test_no_addresses_touches_nothing() -> None:
    assert end_flows([]) == 0
