"""Make the kernel match a desired state, from plain data (no ledger): the CLI's actions and
the controller both call :func:`apply_state` and :func:`apply_all`."""

from __future__ import annotations

from collections.abc import Iterable

from enforcer import cgroups, links
from enforcer.errors import EnforcerError
from enforcer.flows import end_flows
from enforcer.nft import Nft, NftError
from enforcer.spec import KernelBottle, cut_veths
from netrules import render


def apply_all(nft: Nft, bottles: Iterable[KernelBottle], states: dict[str, str]) -> None:
    """Install the whole table: every bottle with a veth, cut off unless its state is open."""
    live = [b for b in bottles if b.net is not None and states.get(b.name, "open") != "killed"]
    nft.apply_table([b.net for b in live if b.net is not None], cut_veths(live, states))


def _network(nft: Nft, bottle: KernelBottle, commands: list[render.Command]) -> None:
    if bottle.net is None:
        raise EnforcerError(f"bottle {bottle.name} has no host veth to enforce on")
    nft.run(commands)


def _cut(nft: Nft, bottle: KernelBottle) -> int:
    """Drop the bottle's packets, then end its connections to the host (see enforcer.flows)."""
    _network(nft, bottle, render.cut(bottle.net.veth if bottle.net is not None else ""))
    return end_flows(bottle.net.addresses) if bottle.net is not None else 0


def _require_cgroup(bottle: KernelBottle, state: str) -> None:
    if bottle.cgroup is None:
        raise EnforcerError(f"bottle {bottle.name} has no cgroup, so it cannot be {state}")


def apply_state(nft: Nft, bottle: KernelBottle, state: str) -> int:
    """Apply ``state`` (open, cutoff, frozen or killed) to one bottle; applying it twice is harmless.

    The network change comes first, so a bottle is cut off before anything slower happens; a cut
    also ends the bottle's established connections to the host (the meter's client side): returns
    how many it closed. ``cutoff`` also thaws a frozen bottle: the states are exact, not cumulative.
    """
    closed = 0
    veth = bottle.net.veth if bottle.net is not None else ""
    has_cgroup = bottle.cgroup is not None and bottle.cgroup.exists()
    if state == "open":
        _network(nft, bottle, render.restore(veth))
        if has_cgroup and bottle.cgroup is not None:
            cgroups.set_frozen(bottle.cgroup, False)
    elif state == "cutoff":
        closed = _cut(nft, bottle)
        if has_cgroup and bottle.cgroup is not None:
            cgroups.set_frozen(bottle.cgroup, False)
    elif state == "frozen":
        _require_cgroup(bottle, state)
        closed = _cut(nft, bottle)
        assert bottle.cgroup is not None
        cgroups.set_frozen(bottle.cgroup, True)
    elif state == "killed":
        closed = _kill(nft, bottle)
    else:
        raise EnforcerError(f"invalid state {state!r}: expected open, cutoff, frozen or killed")
    return closed


def _kill(nft: Nft, bottle: KernelBottle) -> int:
    """Cut off, kill every process, then remove what bbnet made. Parts already gone are skipped."""
    closed = 0
    if bottle.net is not None and (not bottle.managed or links.link_index(bottle.net.veth) is not None):
        closed = _cut(nft, bottle)
    if bottle.cgroup is not None and bottle.cgroup.exists():
        cgroups.kill(bottle.cgroup)
    if bottle.managed:
        teardown(nft, bottle)
    return closed


def teardown(nft: Nft, bottle: KernelBottle) -> None:
    """Remove a bottle's rules, and the cgroup, veth and netns if bbnet made them."""
    if bottle.net is not None:
        try:
            nft.run(render.remove_bottle(bottle.net))
        except NftError:
            if nft.installed():
                raise  # with no table there are no rules to remove
    if bottle.managed:
        if bottle.cgroup is not None:
            cgroups.remove(bottle.cgroup)
        if bottle.net is not None:
            links.delete_link(bottle.net.veth)
        if bottle.netns is not None:
            links.delete_netns(bottle.netns)
