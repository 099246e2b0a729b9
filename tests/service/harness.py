"""Plumbing for the host service's end-to-end tests: a real `bbnet serve` subprocess, bottles made
with the `bbnet` CLI, and `demo.agent` loops (official SDKs) running inside them.

Everything here is a real part: the simulator stands in for the providers' servers (it is the
only thing the bottles cannot reach themselves), nothing else is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbnet.ledger import Ledger
from enforcer.nft import Nft
from netrules import render
from netrules.types import Endpoint
from tests.conftest import BBNET

TEST_POOL = "10.243.192.0/20"  # apart from tests/enforcer's pool, so a leftover never collides
STARTUP_SECONDS = 30.0
PROBE = str(Path(__file__).with_name("probe.py"))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def eventually[T](check: Callable[[], T], timeout: float, what: str, every: float = 0.01) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.1f}s: {what}")
        time.sleep(every)


def clean_env(db: Path) -> dict[str, str]:
    """The caller's environment without bbnet settings or proxies, pointing at ``db``."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("BBNET_") and "proxy" not in k.lower()}
    return {**keep, "BBNET_DB": str(db), "BBNET_ADDR_POOL": TEST_POOL}


@dataclass
class Service:
    """One `bbnet serve` (meter + controller) and the files it uses, all under ``workdir``."""

    workdir: Path
    sim_url: str
    settings_text: str | None = "lease_seconds: 300\n"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def db(self) -> Path:
        return self.workdir / "ledger.db"

    @property
    def settings(self) -> Path:
        return self.workdir / "settings.yml"

    @property
    def confdir(self) -> Path:
        return self.workdir / "confdir"

    @property
    def lock(self) -> Path:
        return self.workdir / "serve.lock"

    @property
    def ca(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"serve-{self.starts}.stderr"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def argv(self) -> list[str]:
        return [BBNET, "serve", "--listen", f"0.0.0.0:{self.port}", "--upstream-map", f"*={self.sim_url}",
                "--db", str(self.db), "--settings", str(self.settings), "--confdir", str(self.confdir),
                "--lock", str(self.lock)]  # fmt: skip

    def start(self) -> None:
        """Start `bbnet serve` and wait until it logs that it serves (the meter listens)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.settings_text is not None and not self.settings.exists():
            self.settings.write_text(self.settings_text)
        self.starts += 1
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                env=clean_env(self.db),
            )  # fmt: skip
        self.wait_ready()

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"bbnet serve exited with {self.process.returncode}:\n{self.stderr()}")
            return "serving: meter listening" in self.stderr() and Path(self.ca).exists()

        eventually(ready, STARTUP_SECONDS, f"bbnet serve ready:\n{self.stderr()}", every=0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the host loses the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def ledger(self) -> Ledger:
        return Ledger.open(self.db, create=False)

    def bbnet(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the `bbnet` command against this service's ledger."""
        return subprocess.run([BBNET, *args], capture_output=True, text=True, env=clean_env(self.db),
                              timeout=timeout, check=False)  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self.bbnet(*args)
        assert done.returncode == 0, f"bbnet {' '.join(args)} failed ({done.returncode}): {done.stderr}"
        return done.stdout


@dataclass(frozen=True)
class BottleInfo:
    name: str
    veth: str
    netns: str
    cgroup: str
    proxy: Endpoint  # the host end of the veth and the meter's port: all the bottle may reach

    @property
    def proxy_url(self) -> str:
        return f"http://{self.proxy.address}:{self.proxy.port}"


def create_bottle(svc: Service, name: str, *extra: str) -> BottleInfo:
    made = json.loads(svc.ok("bottle", "create", name, "--proxy-port", str(svc.port), "--json", *extra))
    return BottleInfo(made["name"], made["veth"], made["netns"], made["cgroup"],
                      Endpoint.parse(made["labels"]["proxy"]))  # fmt: skip


@dataclass
class Agent:
    """A `demo.agent` loop running inside a bottle; its JSON lines are collected as they come."""

    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with contextlib.suppress(json.JSONDecodeError):
                self.lines.append(json.loads(raw))

    def outcomes(self, outcome: str) -> list[dict[str, Any]]:
        return [line for line in list(self.lines) if line.get("outcome") == outcome]

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=5)


def start_agent(svc: Service, bottle: BottleInfo, sdk: str, *args: str) -> Agent:
    """``bbnet bottle exec BOTTLE -- python -m demo.agent ...``: the agent runs in the bottle's
    netns and cgroup and reaches the providers only through the meter."""
    argv = ["bottle", "exec", bottle.name, "--", PYTHON, "-m", "demo.agent", "--sdk", sdk,
            "--proxy", bottle.proxy_url, "--ca", svc.ca, *args]  # fmt: skip
    process = subprocess.Popen(
        [BBNET, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=clean_env(svc.db),
    )  # fmt: skip
    agent = Agent(process)
    agent.reader = threading.Thread(target=agent._read, daemon=True)
    agent.reader.start()
    return agent


def run_agent(
    svc: Service, bottle: BottleInfo, sdk: str, *args: str, timeout: float = 60
) -> list[dict[str, Any]]:
    agent = start_agent(svc, bottle, sdk, *args)
    try:
        agent.wait(timeout)
    finally:
        agent.stop()
    return agent.lines


def probe(svc: Service, bottle: BottleInfo, *args: str) -> dict[str, Any]:
    """Run tests/service/probe.py inside the bottle; its one JSON line."""
    out = svc.ok("bottle", "exec", bottle.name, "--", PYTHON, PROBE, *args)
    return dict(json.loads(out.strip().splitlines()[-1]))


def cut_in_kernel() -> set[str]:
    """The veths in bbnet's cutoff set, read back from the kernel."""
    return set(Nft().cutoff_counters())


def remove_table() -> None:
    with contextlib.suppress(Exception):
        Nft().run([{"delete": {"table": {"family": render.FAMILY, "name": render.TABLE}}}])


def actions(svc: Service, bottle: str | None = None, action: str | None = None) -> list[Any]:
    with svc.ledger() as ledger:
        rows = ledger.actions(limit=100000, bottle=bottle)
    return [a for a in rows if action is None or a.action == action]


@contextlib.contextmanager
def cleanup(svc: Service) -> Iterator[list[Agent]]:
    """Yield a list to register agents in; on exit (also on failure) stop them, stop the service,
    remove every bottle of its ledger and bbnet's table."""
    agents: list[Agent] = []
    try:
        yield agents
    finally:
        for agent in agents:
            with contextlib.suppress(Exception):
                agent.stop()
        svc.stop()
        if svc.db.exists():
            with svc.ledger() as ledger:
                names = [b.name for b in ledger.bottles()]
            for name in names:
                svc.bbnet("bottle", "rm", name)
        remove_table()
