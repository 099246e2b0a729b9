"""Plumbing for the meter's end-to-end tests: the real `bbnet meter run` in a subprocess, and
SDK-grade HTTP clients that reach it over TLS from a chosen loopback source address.

Every bottle in these tests is a loopback address (127.0.0.0/8 is all local on Linux), so one
proxy serves many bottles and a client picks its bottle by binding its source address.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore2
import httpx2

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget
from bbnet.names import Scope
from tests.conftest import BBNET

STARTUP_SECONDS = 30.0
SLOW_CHUNK_DELAY_MS = 150  # the slow simulator: one event every 150 ms


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class MeterProxy:
    """One `bbnet meter run` process; its stderr goes to a file so tests can read it any time."""

    process: subprocess.Popen[bytes]
    port: int
    confdir: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def launch_proxy(
    workdir: Path, db: Path | str, upstream_map: list[str], env: dict[str, str] | None = None,
    settings_text: str = "fail_open: false\n",
) -> MeterProxy:  # fmt: skip
    """Start `bbnet meter run` (not waiting for it: see :func:`wait_ready`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    confdir = workdir / "confdir"
    settings = workdir / "settings.yml"
    settings.write_text(settings_text)
    stderr_path = workdir / "meter.stderr"
    args = [BBNET, "meter", "run", "--listen", f"127.0.0.1:{port}", "--db", str(db)]
    args += ["--settings", str(settings), "--confdir", str(confdir)]
    for item in upstream_map:
        args += ["--upstream-map", item]
    clean_env = {
        k: v for k, v in os.environ.items() if not k.startswith("BBNET_") and "proxy" not in k.lower()
    }
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            env={**clean_env, **(env or {})},
        )  # fmt: skip
    return MeterProxy(process, port, confdir, stderr_path)


def wait_ready(proxy: MeterProxy, timeout: float = STARTUP_SECONDS) -> None:
    """Block until the proxy accepts connections; raise with its stderr if it died or hung."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"bbnet meter run exited with {proxy.process.returncode}:\n{proxy.stderr()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5):
            if Path(proxy.ca).exists():
                return
        time.sleep(0.05)
    raise RuntimeError(f"bbnet meter run did not listen within {timeout:.0f}s:\n{proxy.stderr()}")


@contextlib.contextmanager
def running_proxies(*proxies: MeterProxy) -> Iterator[tuple[MeterProxy, ...]]:
    """Wait for every proxy (they start in parallel); stop them all on exit, even on failure."""
    try:
        for proxy in proxies:
            wait_ready(proxy)
        yield proxies
    finally:
        for proxy in proxies:
            proxy.stop()


class SourceBoundBackend(httpcore2.SyncBackend):
    """Every TCP connection from ``source``: httpcore's proxy tunnels drop ``local_address``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        return super().connect_tcp(host, port, timeout, self.source, socket_options)


class SourceBoundProxyTransport(httpx2.HTTPTransport):
    """httpx2's transport through an HTTP proxy, connecting from a chosen local address.

    ``httpx2.HTTPTransport`` does not pass ``local_address`` on when a proxy is set, so the pool is
    the ``httpcore2.HTTPProxy`` it would build, over a backend that binds the source address.
    """

    def __init__(self, proxy_url: str, ca_file: str, source: str) -> None:
        super().__init__()
        url = httpx2.URL(proxy_url)
        self._pool = httpcore2.HTTPProxy(
            proxy_url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=b"/"),
            ssl_context=ssl.create_default_context(cafile=ca_file),
            network_backend=SourceBoundBackend(source),
        )


def http_client(proxy: MeterProxy, source: str, timeout: float = 20.0) -> httpx2.Client:
    """An HTTP client that goes through ``proxy`` over TLS (trusting its CA) from ``source``."""
    transport = SourceBoundProxyTransport(proxy.url, proxy.ca, source)
    return httpx2.Client(transport=transport, timeout=timeout, trust_env=False)


def wait_for(probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll ``probe`` until it returns something truthy; return its last value either way."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = probe()
    return value


def source(bottle: Bottle) -> str:
    """The bottle's (first) address: where its test clients bind."""
    return bottle.addresses[0].split("/", 1)[0]


def bottle_maker(ledger: Ledger, prefix: str, addresses: Iterator[int]) -> Callable[..., Bottle]:
    """Register a bottle on the next loopback address of ``addresses``, optionally with a token
    budget: ``make(budget=None, provider="*")``."""

    def make(budget: int | None = None, provider: str = "*") -> Bottle:
        n = next(addresses)
        made = ledger.add_bottle(Bottle(f"{prefix}-{n}", addresses=(f"127.0.0.{n}/32",)))
        if budget is not None:
            ledger.set_budget(Budget(Scope.parse(f"bottle:{made.name}"), provider, "tokens", budget))
        return made

    return make
