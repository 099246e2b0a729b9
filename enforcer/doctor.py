"""`bbnet doctor`: is enforcement live on this host? Each check says ok, warn or fail, and why.

The last check reserves and releases through the ledger's real code path (SpendGuard's install
probe), so a green doctor means a call would be metered and gated right now.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from bbnet.ledger import Ledger, LedgerError
from bbnet.limits import SettingsError
from bbnet.model import Outcome, ReserveRequest
from bbnet.schema import SCHEMA_VERSION
from enforcer import cgroups
from enforcer.errors import EnforcerError
from enforcer.flows import end_flows

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


def _check(name: str, fn: Callable[[], tuple[str, str]]) -> Check:
    try:
        status, detail = fn()
    except (EnforcerError, LedgerError, SettingsError, OSError, ValueError) as e:
        return Check(name, FAIL, str(e))
    return Check(name, status, detail)


def _root() -> tuple[str, str]:
    return (OK, "running as root") if os.geteuid() == 0 else (FAIL, "bbnet enforces as root; run it as root")


def _nftables() -> tuple[str, str]:
    from enforcer.nft import Nft

    installed = Nft().installed()
    return (OK, "libnftables loaded; bbnet table installed") if installed else (
        WARN, "libnftables loaded; bbnet table not installed yet (bbnet serve or a bottle command installs it)")  # fmt: skip


def _netns() -> tuple[str, str]:
    done = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return FAIL, f"cannot create a network namespace: {done.stderr.strip() or done.returncode}"
    return OK, "network namespaces can be created"


def _cgroup() -> tuple[str, str]:
    mount = cgroups.find_v2_mount()
    parent = mount / cgroups.GROUP_DIR
    parent.mkdir(exist_ok=True)
    probe = parent / f"doctor-{uuid.uuid4().hex[:8]}"
    probe.mkdir()
    try:
        missing = [f for f in ("cgroup.freeze", "cgroup.kill") if not (probe / f).exists()]
    finally:
        probe.rmdir()
    if missing:
        return FAIL, f"cgroup v2 at {mount} lacks {', '.join(missing)} (kernel too old?)"
    return OK, f"cgroup v2 at {mount} supports freeze and kill"


def _sock_destroy() -> tuple[str, str]:
    """Can a cut end established connections? A loopback pair from an address nothing else uses."""
    peer = IPv4Address(
        f"127.{secrets.randbelow(200) + 50}.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
    )
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        client = stack.enter_context(socket.socket())
        client.bind((str(peer), 0))
        client.connect(server.getsockname())
        stack.enter_context(server.accept()[0])
        closed = end_flows([peer])
    if closed:
        return OK, "a cut closes the bottle's established connections (ss --kill)"
    return WARN, ("the kernel cannot close sockets (CONFIG_INET_DIAG_DESTROY): a cut drops a bottle's "
                  "packets, but calls in flight run on upstream until they end")  # fmt: skip


def _ledger(db: str) -> tuple[str, str]:
    with Ledger.open(db, create=False) as ledger:
        version = ledger.schema_version()
        where = ledger.where  # a PostgreSQL URL without its password
        mode = None if ledger.url is not None else stat.S_IMODE(os.stat(ledger.path).st_mode)  # a file's only
        ledger.sweep_expired(now=0)  # a write transaction that changes nothing: proves it is writable
    if version != SCHEMA_VERSION:
        return FAIL, f"{where}: schema v{version}, expected v{SCHEMA_VERSION}"
    if mode is None:
        return OK, f"{where}: writable, schema v{version}"
    if mode & 0o077:
        return FAIL, f"{where}: mode {oct(mode)}, expected 0600 (it holds spend and audit data)"
    return OK, f"{where}: writable, schema v{version}, mode 0600"


def _settings(path: str) -> tuple[str, str]:
    from bbnet import settings

    if not Path(path).exists():
        return WARN, f"{path} does not exist: documented defaults apply"
    settings.load(path, required=True)
    return OK, f"{path} is valid"


def _egress(db: str, path: str) -> tuple[str, str]:
    """The egress policy in force: the host default, and how many bottles carry their own."""
    from bbnet import settings
    from bbnet.egress import describe

    default = describe(settings.load(path).egress)
    with Ledger.open(db, create=False) as ledger:
        own, bottles = len(ledger.egress_policies()), len(ledger.bottles())
    return OK, f"host default: {default}; {own} of {bottles} bottles have their own policy"


def _proxy(host: str, port: int, confdir: str) -> tuple[str, str]:
    ca = Path(confdir) / "mitmproxy-ca-cert.pem"
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as e:
        return FAIL, f"nothing listens on {host}:{port} ({e.strerror or e}): is bbnet serve running?"
    if not ca.exists():
        return FAIL, f"proxy listens on {host}:{port} but its CA {ca} is missing"
    return OK, f"proxy listens on {host}:{port}; bottles trust {ca}"


def _probe(db: str) -> tuple[str, str]:
    with Ledger.open(db, create=False) as ledger:
        bottles = ledger.bottles()
        if not bottles:
            return WARN, "no bottles yet: reserve/release probe skipped"
        bottle = bottles[0].name
        before = ledger.pools()
        key = f"doctor-{uuid.uuid4()}"
        result = ledger.reserve(ReserveRequest(key, bottle, "bbnet-doctor", "anthropic", None, 1, 1))
        released = ledger.release(key)
        after = ledger.pools()
    if result.outcome is not Outcome.DENY and not released:
        return FAIL, "reserve held tokens but release found nothing to return"
    if [(p.used, p.reserved) for p in before] != [(p.used, p.reserved) for p in after]:
        return FAIL, "the probe left pools changed"
    return OK, f"reserve ({result.outcome.value}) + release on bottle {bottle} through the ledger"


def run_checks(*, db: str, settings_path: str, proxy_host: str, proxy_port: int, confdir: str) -> list[Check]:
    return [
        _check("root", _root),
        _check("nftables", _nftables),
        _check("netns", _netns),
        _check("cgroup v2", _cgroup),
        _check("connections", _sock_destroy),
        _check("ledger", lambda: _ledger(db)),
        _check("settings", lambda: _settings(settings_path)),
        _check("egress", lambda: _egress(db, settings_path)),
        _check("proxy", lambda: _proxy(proxy_host, proxy_port, confdir)),
        _check("probe", lambda: _probe(db)),
    ]
