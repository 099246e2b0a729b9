"""`bbnet serve`: the one root-run process per host — the meter (mitmproxy, in-process) and the
controller, with the settings' budgets synced into the ledger and systemd told when it is ready.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bbnet import fleet_lease, metrics
from bbnet.ledger import Ledger
from bbnet.providers import with_extra
from bbnet.settings import Settings
from enforcer.bottles import require_root
from enforcer.controller import Controller
from enforcer.errors import EnforcerError
from enforcer.nft import Nft
from enforcer.webhook import Webhook

if TYPE_CHECKING:
    from meter.addon import Upstream

log = logging.getLogger("bbnet.serve")
DEFAULT_LOCK = "/run/bbnet/serve.lock"


def default_lock() -> str:
    return os.environ.get("BBNET_SERVE_LOCK") or DEFAULT_LOCK


@contextmanager
def single_instance(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock for the life of the service; a second `bbnet serve` is refused."""
    p = Path(path)
    p.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise EnforcerError(f"another bbnet serve is running (pid {holder}, lock {p})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op when not started by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


class Ready:
    """mitmproxy addon: the proxy is listening (its ``running`` hook), so the service is ready."""

    def __init__(self, listen: str) -> None:
        self.listen = listen

    def running(self) -> None:
        log.info("serving: meter listening on %s", self.listen)
        sd_notify("READY=1")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def metrics_listener(settings: Settings, db: str) -> Iterator[metrics.Metrics | None]:
    """``/metrics`` for the life of the service (``metrics.enabled``), its gauges read through a
    ledger connection of their own (a scrape never waits on, or holds up, the meter's or the
    controller's). A listener that cannot bind is logged and left out: observability never keeps
    enforcement from starting."""
    if not settings.metrics.enabled:
        yield None
        return
    m = metrics.enable()
    gauges = Ledger.open(db)
    m.registry.register(metrics.LedgerGauges(gauges))
    host, port = settings.metrics.address()
    listener = None
    try:
        listener = metrics.Listener(m, host, port)
        log.info("metrics: /metrics on http://%s", listener.address)
    except OSError as e:
        log.warning("metrics: cannot listen on %s (%s): serving without /metrics", settings.metrics.listen,
                    e.strerror or e)  # fmt: skip
    try:
        yield m
    finally:
        if listener is not None:
            listener.close()
        gauges.close()
        metrics.disable()


def serve(settings: Settings, *, db: str, host: str, port: int, confdir: str, upstream: dict[str, Upstream],
          lock: str, fail_open: bool) -> None:  # fmt: skip
    """Run until SIGTERM/SIGINT. Raises a user-facing error if anything needed is missing."""
    from meter.addon import Meter
    from meter.proxy import serve_forever
    from meter.run_cli import egress_default

    require_root()
    node = settings.node or ""
    with (
        single_instance(lock),
        metrics_listener(settings, db) as m,
        Ledger.open(db, node=node) as controller_ledger,
    ):
        meter_ledger = fleet_lease.open_host_ledger(db, settings)  # fleet: global budgets are the fleet's
        if m is not None:
            metrics.instrument(meter_ledger, m)
            metrics.instrument(controller_ledger, m)
        synced = meter_ledger.sync_budgets([] if settings.fleet else settings.global_budgets())
        log.info(
            "ledger %s; budgets from settings: %d changed, %d removed",
            meter_ledger.where,
            synced["changed"],
            synced["removed"],
        )
        webhook = Webhook(settings.webhook, controller_ledger) if settings.webhook is not None else None
        if webhook is not None:
            webhook.start()
        controller = Controller(controller_ledger, Nft(), settings, webhook=webhook)
        controller.start()
        meter = Meter(meter_ledger, fail_open=fail_open, lease_seconds=settings.lease_seconds, upstream=upstream,
                      catalogue=with_extra(settings.extra_providers()), on_commit=controller.notify_commit,
                      on_exhausted=controller.notify_exhausted,
                      egress_default=egress_default(settings, meter_ledger, "serve"), stakes=settings.stakes)  # fmt: skip
        previous = signal.signal(signal.SIGTERM, _sigterm)
        try:
            serve_forever([meter, Ready(f"{host}:{port}")], host, port, confdir)
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            signal.signal(signal.SIGTERM, previous)
            sd_notify("STOPPING=1")
            controller.stop()
            if webhook is not None:
                webhook.stop()
            meter_ledger.close()
