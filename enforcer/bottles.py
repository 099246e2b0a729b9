"""Create, register, enter and remove bottles: the imperative shell over links, cgroups, nft and
the ledger. Each operation either completes or undoes everything it made so far."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from bbnet.defaults import DEFAULT_ADDRESS_POOL, DEFAULT_PROXY_PORT
from bbnet.ledger import Ledger
from bbnet.limits import parse_limit
from bbnet.model import POLICIES, Bottle, Budget
from bbnet.names import Scope, bottle_name
from bbnet.providers import PROVIDER_KEYS
from enforcer import cgroups, links
from enforcer.errors import EnforcerError
from enforcer.kernel import apply_all, teardown
from enforcer.nft import Nft
from enforcer.spec import ALLOW_LABEL, PROXY_LABEL, allow_text, kernel_bottle
from netrules import render
from netrules.addressing import allocate, check_free, lease_for_address
from netrules.types import BottleNet, Endpoint, host_veth_for, veth_name

NETNS_PREFIX = "bbnet-"
ACTOR = "cli"


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnforcerError("this needs root: bottles are network namespaces, veths and nftables rules")


def parse_budgets(items: Iterable[str]) -> list[tuple[str, int]]:
    """``PROVIDER=LIMIT`` pairs (tokens), validated before anything is made."""
    parsed = []
    for item in items:
        provider, sep, limit = item.partition("=")
        if not sep or provider not in PROVIDER_KEYS:
            raise EnforcerError(
                f"invalid budget {item!r}: expected PROVIDER=LIMIT with PROVIDER one of {', '.join(sorted(PROVIDER_KEYS))}"
            )
        try:
            parsed.append((provider, parse_limit(limit, "tokens")))
        except ValueError as exc:
            raise EnforcerError(f"invalid budget {item!r}: {exc}") from None
    return parsed


@dataclass(frozen=True)
class Launch:
    """Everything ``bottle create`` and ``bottle register`` take besides how to find the netns."""

    name: str
    parent: str | None = None
    policy: str = "cutoff"
    budgets: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    proxy_port: int = DEFAULT_PROXY_PORT
    labels: dict[str, str] = field(default_factory=dict)
    default_budgets: tuple[Budget, ...] = ()  # settings' bottle_defaults; --budget wins per provider
    egress: str | None = None  # the bottle's own egress policy (JSON); None: the host default

    def validated(self) -> tuple[list[tuple[str, int]], tuple[Endpoint, ...]]:
        bottle_name(self.name)
        if self.parent is not None:
            bottle_name(self.parent)
        if self.policy not in POLICIES:
            raise EnforcerError(f"invalid policy {self.policy!r}: expected one of {', '.join(POLICIES)}")
        return parse_budgets(self.budgets), tuple(Endpoint.parse(a) for a in self.allow)


def _taken_networks(ledger: Ledger) -> list[IPv4Network]:
    return [IPv4Interface(a).network for b in ledger.bottles() for a in b.addresses]


def _check_new(ledger: Ledger, launch: Launch) -> None:
    if ledger.get_bottle(launch.name) is not None:
        raise EnforcerError(f"bottle {launch.name!r} already exists")
    if launch.parent is not None and ledger.get_bottle(launch.parent) is None:
        raise EnforcerError(f"parent bottle {launch.parent!r} does not exist")


def _install(nft: Nft, ledger: Ledger, net: BottleNet, undo: contextlib.ExitStack) -> None:
    """Add one bottle's rules, installing the whole table first if it is not there."""
    if not nft.installed():
        states = {s.bottle: s.state for s in ledger.desired_states()}
        apply_all(nft, [kernel_bottle(b) for b in ledger.bottles()], states)
    nft.run(render.add_bottle(net))
    undo.callback(nft.run, render.remove_bottle(net))


def _record(
    ledger: Ledger,
    bottle: Bottle,
    budgets: list[tuple[str, int]],
    undo: contextlib.ExitStack,
    action: str,
    started: float,
    defaults: Iterable[Budget] = (),
    egress: str | None = None,
) -> Bottle:
    saved = ledger.add_bottle(bottle)
    undo.callback(ledger.remove_bottle, bottle.name)
    named = {provider for provider, _ in budgets}
    for default in defaults:
        if not (default.unit == "tokens" and default.provider in named):
            ledger.set_budget(default)
    for provider, limit in budgets:
        ledger.set_budget(Budget(Scope.of_bottle(bottle.name), provider, "tokens", limit, source="launch"))
    ledger.record_action(
        bottle.name, action, ACTOR, "", "ok", (time.perf_counter() - started) * 1000,
        {"veth": bottle.veth, "addresses": list(bottle.addresses)},
    )  # fmt: skip
    if egress is not None:
        ledger.set_egress(bottle.name, egress, ACTOR, action)
    return saved


def create(
    ledger: Ledger, launch: Launch, *, addr: str | None = None, pool: str = DEFAULT_ADDRESS_POOL
) -> Bottle:
    """Make a netns, a veth pair with addresses and a default route, a cgroup, the bottle's rules
    and its ledger row (with launch budgets). Any failure undoes what was made."""
    started = time.perf_counter()
    budgets, allow = launch.validated()
    taken = _taken_networks(ledger)
    lease = check_free(lease_for_address(addr), taken) if addr else allocate(pool, taken)
    _check_new(ledger, launch)
    require_root()
    nft = Nft()
    veth, ns_name = host_veth_for(launch.name), NETNS_PREFIX + launch.name
    group = cgroups.group_for(cgroups.find_v2_mount(), launch.name)
    net = BottleNet(veth, (lease.bottle.ip,), Endpoint(lease.host.ip, "tcp", launch.proxy_port), allow)
    with contextlib.ExitStack() as undo:
        links.create_netns(ns_name)
        undo.callback(links.delete_netns, ns_name)
        links.create_veth(veth, ns_name, lease)
        undo.callback(links.delete_link, veth)
        _install(nft, ledger, net, undo)  # nothing runs in the new netns before its rules are in
        cgroups.create(group)
        undo.callback(cgroups.remove, group)
        labels = {**launch.labels, PROXY_LABEL: str(net.proxy)}
        if allow:
            labels[ALLOW_LABEL] = allow_text(net.allow)
        bottle = Bottle(
            name=launch.name, parent=launch.parent, netns=ns_name, veth=veth, addresses=(str(lease.bottle),),
            cgroup=str(group), policy=launch.policy, managed=True, labels=labels,
        )  # fmt: skip
        saved = _record(
            ledger, bottle, budgets, undo, "create", started, launch.default_budgets, launch.egress
        )
        undo.pop_all()
    return saved


@dataclass(frozen=True)
class Found:
    """An existing bottle's attachment to the host, however it was found."""

    netns: str | None
    veth: str
    addresses: tuple[IPv4Address, ...]
    proxy: IPv4Address


def _proxy_address(given: str | None, fallback: IPv4Address | None, where: str) -> IPv4Address:
    if given is not None:
        try:
            return IPv4Address(given)
        except ValueError:
            raise EnforcerError(f"invalid proxy address {given!r}: expected an IPv4 address") from None
    if fallback is None:
        raise EnforcerError(f"{where}: no gateway address to reach the proxy on; pass --proxy ADDRESS")
    return fallback


def find(
    *,
    netns: str | None = None,
    pid: int | None = None,
    veth: str | None = None,
    addrs: tuple[str, ...] = (),
    proxy: str | None = None,
) -> Found:
    """Locate an existing namespace's host veth: by netns name, by PID, or by host veth name."""
    if sum(x is not None for x in (netns, pid, veth)) != 1:
        raise EnforcerError("register needs exactly one of --netns, --pid or --veth")
    if veth is not None:
        veth_name(veth)
        if links.link_index(veth) is None:
            raise EnforcerError(f"interface {veth} does not exist")
        if not addrs:
            raise EnforcerError(f"register --veth {veth}: pass the bottle's address(es) with --addr")
        try:
            addresses = tuple(IPv4Interface(a).ip for a in addrs)
        except ValueError as exc:
            raise EnforcerError(f"invalid address: {exc}") from None
        return Found(None, veth, addresses, _proxy_address(proxy, links.gateway_for(veth), veth))
    ref = f"/proc/{pid}/ns/net" if pid is not None else str(netns)
    if pid is not None and not Path(ref).exists():
        raise EnforcerError(f"no process {pid}")
    attached = links.attachment(ref)
    return Found(netns, attached.host_veth, attached.addresses, _proxy_address(proxy, attached.gateway, ref))


def register(ledger: Ledger, launch: Launch, found: Found, *, cgroup: str | None = None) -> Bottle:
    """Adopt an existing namespace (a container's): its rules and ledger row, nothing else made."""
    started = time.perf_counter()
    budgets, allow = launch.validated()
    _check_new(ledger, launch)
    for other in ledger.bottles():
        if other.veth == found.veth:
            raise EnforcerError(f"interface {found.veth} already belongs to bottle {other.name!r}")
    group = _adopted_cgroup(cgroup)
    require_root()
    nft = Nft()
    net = BottleNet(found.veth, found.addresses, Endpoint(found.proxy, "tcp", launch.proxy_port), allow)
    with contextlib.ExitStack() as undo:
        _install(nft, ledger, net, undo)
        labels = {**launch.labels, PROXY_LABEL: str(net.proxy)}
        if allow:
            labels[ALLOW_LABEL] = allow_text(net.allow)
        bottle = Bottle(
            name=launch.name, parent=launch.parent, netns=found.netns, veth=found.veth,
            addresses=tuple(f"{a}/32" for a in found.addresses), cgroup=group, policy=launch.policy,
            managed=False, labels=labels,
        )  # fmt: skip
        saved = _record(
            ledger, bottle, budgets, undo, "register", started, launch.default_budgets, launch.egress
        )
        undo.pop_all()
    return saved


def _adopted_cgroup(path: str | None) -> str | None:
    """A registered bottle's cgroup must be an existing group below the v2 root, never the root."""
    if path is None:
        return None
    root = cgroups.find_v2_mount()
    group = Path(path) if Path(path).is_absolute() else root / path
    group = group.resolve()
    if group == root or root not in group.parents or not (group / "cgroup.procs").is_file():
        raise EnforcerError(f"invalid cgroup {path!r}: expected an existing cgroup v2 group below {root}")
    return str(group)


def get(ledger: Ledger, name: str) -> Bottle:
    bottle = ledger.get_bottle(bottle_name(name))
    if bottle is None:
        raise EnforcerError(f"unknown bottle {name!r}")
    return bottle


def remove(ledger: Ledger, name: str) -> None:
    """Remove the bottle's rules and what bbnet made for it; the ledger keeps its history."""
    started = time.perf_counter()
    bottle = get(ledger, name)
    require_root()
    teardown(Nft(), kernel_bottle(bottle))
    ledger.remove_bottle(name)
    ledger.record_action(name, "rm", ACTOR, "", "ok", (time.perf_counter() - started) * 1000)


def netns_file(bottle: Bottle) -> str:
    if bottle.netns is None:
        raise EnforcerError(f"bottle {bottle.name} has no network namespace bbnet knows")
    return bottle.netns if "/" in bottle.netns else str(links.netns_path(bottle.netns))


def enter(netns: str, cgroup: str | None) -> Callable[[], None]:
    """A function that moves the calling process into a bottle: its cgroup, then its netns.
    Used as a ``preexec_fn``, or called just before ``exec``."""

    def _enter() -> None:
        if cgroup is not None:
            cgroups.add_process(Path(cgroup), os.getpid())
        fd = os.open(netns, os.O_RDONLY)
        try:
            os.setns(fd, os.CLONE_NEWNET)
        finally:
            os.close(fd)

    return _enter


def exec_in(bottle: Bottle, argv: list[str]) -> None:
    """Replace this process with ``argv`` running inside the bottle (does not return)."""
    if not argv:
        raise EnforcerError("nothing to run: pass a command after --")
    require_root()
    enter(netns_file(bottle), bottle.cgroup)()
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - running the operator's command is the point
    except OSError as exc:
        raise EnforcerError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
