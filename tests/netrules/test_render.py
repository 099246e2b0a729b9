"""Golden-file and property tests for the pure ruleset renderer."""

from __future__ import annotations

import json
import os
import re
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netrules import render
from netrules.types import BottleNet, Endpoint, RulesError, host_veth_for

GOLDEN = Path(__file__).parent / "golden"
SAFE = re.compile(r"^[A-Za-z0-9_.:@/=!-]*$")  # "==" and "!=" are the renderer's own operators


def _bottle(name: str, third: int, allow: tuple[Endpoint, ...] = ()) -> BottleNet:
    return BottleNet(
        host_veth_for(name),
        (IPv4Address(f"10.243.{third}.2"),),
        Endpoint(IPv4Address(f"10.243.{third}.1"), "tcp", 8080),
        allow,
    )


ALPHA = _bottle("alpha", 0, (Endpoint.parse("udp:10.9.0.53:53"), Endpoint.parse("10.9.0.7:443")))
BRAVO = _bottle("a-bottle-with-a-long-name", 1)


def _check_golden(name: str, data: Any) -> None:
    path = GOLDEN / name
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if os.environ.get("BBNET_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file; rerun with BBNET_UPDATE_GOLDEN=1"


def test_full_table_matches_golden() -> None:
    _check_golden("full_table.json", render.document(render.full_table([BRAVO, ALPHA], cutoff=[BRAVO.veth])))


def test_deltas_match_golden() -> None:
    deltas = {
        "cut": render.cut(ALPHA.veth),
        "restore": render.restore(ALPHA.veth),
        "add_bottle": render.add_bottle(ALPHA),
        "add_bottle_cut": render.add_bottle(BRAVO, cutoff=True),
        "remove_bottle": render.remove_bottle(ALPHA),
    }
    _check_golden("deltas.json", deltas)


def test_output_is_deterministic_whatever_the_input_order() -> None:
    one = render.full_table([ALPHA, BRAVO], cutoff=[BRAVO.veth, BRAVO.veth])
    two = render.full_table([BRAVO, ALPHA, ALPHA], cutoff=[BRAVO.veth])
    assert one == two


def test_two_bottles_on_one_interface_is_refused() -> None:
    clash = BottleNet(ALPHA.veth, (IPv4Address("10.1.1.1"),), ALPHA.proxy)
    with pytest.raises(RulesError, match="two bottles on one interface"):
        render.full_table([ALPHA, clash])


def test_veth_names_fit_ifnamsiz_and_do_not_collide() -> None:
    assert host_veth_for("alpha") == "bb-alpha"
    long_one, long_two = host_veth_for("abcdefghijklmn"), host_veth_for("abcdefghijklmo")
    assert len(long_one) == len(long_two) == 15
    assert long_one != long_two
    assert host_veth_for("abcdefghijklmn") == long_one


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: host_veth_for("Bad Name"), "invalid bottle name"),
        (lambda: render.cut("eth0; flush ruleset"), "invalid interface name"),
        (lambda: render.cut("x" * 16), "invalid interface name"),
        (lambda: Endpoint.parse("tcp:10.0.0.1:99999"), "invalid port"),
        (lambda: Endpoint.parse("icmp:10.0.0.1:1"), "invalid endpoint"),
        (lambda: Endpoint.parse("tcp:example.com:443"), "not an IPv4 address"),
        (lambda: BottleNet("bb-x", (), ALPHA.proxy), "needs at least one IPv4 address"),
        (lambda: BottleNet("bb-x", ("10.0.0.1",), ALPHA.proxy), "expected an IPv4 address"),  # type: ignore[arg-type]
        (
            lambda: BottleNet("bb-x", ALPHA.addresses, Endpoint.parse("udp:10.0.0.1:53")),
            "proxy must be a tcp",
        ),
    ],
)
def test_bad_input_is_refused_with_a_message(make: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        make()


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


_text = st.text(min_size=0, max_size=40)
_addresses = st.integers(min_value=0, max_value=2**32 - 1).map(IPv4Address)


@st.composite
def _attempt(draw: st.DrawFn) -> BottleNet | None:
    """A bottle built from arbitrary text, or None when validation refuses it."""
    try:
        veth = host_veth_for(draw(_text)) if draw(st.booleans()) else draw(_text)
        allow = tuple(
            Endpoint.parse(draw(_text))
            if draw(st.booleans())
            else Endpoint(draw(_addresses), "udp", draw(st.integers()))
            for _ in range(draw(st.integers(0, 2)))
        )
        return BottleNet(
            veth, (draw(_addresses),), Endpoint(draw(_addresses), "tcp", draw(st.integers())), allow
        )
    except RulesError:
        return None


@given(st.lists(_attempt(), max_size=4), st.lists(_text, max_size=3))
def test_no_accepted_input_renders_an_unsafe_string(attempts: list[BottleNet | None], cut: list[str]) -> None:
    bottles = {b.veth: b for b in attempts if b is not None}
    commands: list[Any] = []
    try:
        commands = render.full_table(bottles.values(), cutoff=cut)
    except RulesError:
        commands = render.full_table(bottles.values())
    for bottle in bottles.values():
        commands += render.add_bottle(bottle) + render.remove_bottle(bottle) + render.restore(bottle.veth)
    for text in _strings(commands):
        assert SAFE.fullmatch(text), text


@given(st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True))
def test_every_valid_bottle_name_gives_a_valid_distinct_veth(name: str) -> None:
    veth = host_veth_for(name)
    assert len(veth) <= 15
    assert render.cut(veth)  # accepted by the renderer's own validation
    assert (veth == "bb-" + name) == (len(name) <= 12)
