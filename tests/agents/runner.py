"""Running a real agent CLI in a bottle through `bbnet serve`, and reading what it left behind:
shared by the real-agent tests and bench/agents_bench.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meter.sim import SimHandle
from tests.agents.clis import PROMPT, Cli, base_env
from tests.conftest import BBNET
from tests.service.harness import BottleInfo, Service, clean_env

RUN_SECONDS = 300  # one agent run: a few seconds here, far more on one busy core


@dataclass
class Run:
    """One agent run inside a bottle (`bbnet bottle exec`), its own process group."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self, timeout: float = RUN_SECONDS) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"agent still running after {timeout}s:\n{self.stderr()}") from None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """The CLI and whatever it started (Gemini re-launches itself as a child)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def start(svc: Service, bottle: BottleInfo, cli: Cli, workdir: Path, tag: str) -> Run:
    home = workdir / f"home-{tag}"
    home.mkdir(mode=0o700)
    cli.prepare(home)
    env = {**base_env(home, bottle.proxy_url, svc.ca), **cli.env(home)}
    argv = [BBNET, "bottle", "exec", bottle.name, "--", "/usr/bin/env", "-i",
            *(f"{k}={v}" for k, v in env.items()), *cli.argv(PROMPT)]  # fmt: skip
    out, err = workdir / f"{tag}.stdout", workdir / f"{tag}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=home,
                                   env=clean_env(svc.db), start_new_session=True)  # fmt: skip
    return Run(process, out, err)


def run_ok(svc: Service, bottle: BottleInfo, cli: Cli, workdir: Path, tag: str) -> Run:
    run = start(svc, bottle, cli, workdir, tag)
    code = run.wait()
    assert code == 0, f"{cli.name} exited {code}:\n{run.stdout()[-2000:]}\n{run.stderr()}"
    return run


def sim_requests(sim: SimHandle) -> Counter[str]:
    """Every request the simulator answered since the last reset, as "METHOD path status"."""
    return Counter(sim.stats()["requests"])


def usage(svc: Service, bottle: BottleInfo) -> list[dict[str, Any]]:
    with svc.ledger() as ledger:
        return ledger.usage(bottle=bottle.name, limit=100000)


def no_reservations(svc: Service) -> bool:
    with svc.ledger() as ledger:
        return not ledger.reservations()
