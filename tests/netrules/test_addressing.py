from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest

from netrules.addressing import allocate, check_free, lease_for_address
from netrules.types import RulesError


def test_allocate_takes_the_first_free_slash_30() -> None:
    first = allocate("10.243.0.0/16", [])
    assert (first.host, first.bottle) == (IPv4Interface("10.243.0.1/30"), IPv4Interface("10.243.0.2/30"))
    taken = [IPv4Network("10.243.0.0/30"), IPv4Network("10.243.0.8/29"), IPv4Network("10.9.0.0/30")]
    second = allocate("10.243.0.0/16", taken)
    assert second.network == IPv4Network("10.243.0.4/30")
    third = allocate("10.243.0.0/16", [*taken, second.network])
    assert third.network == IPv4Network("10.243.0.16/30")


def test_allocate_reports_an_exhausted_pool() -> None:
    with pytest.raises(RulesError, match=r"address pool 10.1.0.0/29 is exhausted"):
        allocate("10.1.0.0/29", [IPv4Network("10.1.0.0/30"), IPv4Network("10.1.0.4/30")])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.1.0.0/33", "invalid IPv4 CIDR"),
        ("nonsense", "invalid IPv4 CIDR"),
        ("10.1.0.1/31", "need a /30 or larger"),
        ("10.1.0.0/30", "network or broadcast"),
    ],
)
def test_bad_explicit_address(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        lease_for_address(text)


def test_explicit_address_picks_the_other_host_end() -> None:
    assert lease_for_address("10.5.0.2/24").host == IPv4Interface("10.5.0.1/24")
    assert lease_for_address("10.5.0.1/24").host == IPv4Interface("10.5.0.2/24")


def test_bad_pool_and_overlap() -> None:
    with pytest.raises(RulesError, match=r"invalid IPv4 CIDR '10\.1\.0\.1/16'"):
        allocate("10.1.0.1/16", [])
    with pytest.raises(RulesError, match=r"overlaps 10\.5\.0\.0/16"):
        check_free(lease_for_address("10.5.3.2/30"), [IPv4Network("10.5.0.0/16")])
