"""The demo's child processes: services (simulator, ``bbnet serve``) and agent loops in bottles.

Every child starts in its own session, so a Ctrl-C at the terminal reaches only the demo, which
then stops its children in order (agents, meter, simulator) instead of racing them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from demo.scenario import parse_agent_line

STOP_SECONDS = 10.0


class DemoError(Exception):
    """The demo cannot go on; the message says what failed and where its log is."""


def child_env() -> dict[str, str]:
    """This environment without proxy variables and bbnet settings that could point at the host's
    installation: every child gets its paths on the command line."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BBNET_") and "proxy" not in k.lower()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Service:
    """A long-running child whose output goes to a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        """Block until ``ready()``; raise with the end of the log if the child died or hung."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise DemoError(
                    f"{self.name} exited with {self.process.returncode} (log {self.log}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{self.name} was not ready within {timeout:.0f} s (log {self.log}):\n{self.tail()}"
                )
            time.sleep(0.05)


def start_service(name: str, argv: list[str], log: Path) -> Service:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=child_env(), start_new_session=True)  # fmt: skip
    return Service(name, process, log)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``STOP_SECONDS``; reaps it either way."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class AgentRun:
    """One ``demo.agent`` loop in a bottle; its JSON lines are collected as they arrive."""

    bottle: str
    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            event = parse_agent_line(line)
            if event is not None:
                with self._lock:
                    self.events.append(event)

    def running(self) -> bool:
        return self.process.poll() is None

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        """Wait for the agent to exit and its last line to be read; every event it printed."""
        self.process.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        return self.snapshot()


def start_agent(bottle: str, argv: list[str], stderr: Path) -> AgentRun:
    """Start ``argv`` (a ``bbnet bottle exec`` command line) and read its stdout on a thread."""
    with stderr.open("ab") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                   text=True, env=child_env(), start_new_session=True)  # fmt: skip
    run = AgentRun(bottle, process)
    assert process.stdout is not None
    run._reader = threading.Thread(
        target=run._read, args=(process.stdout,), name=f"agent-{bottle}", daemon=True
    )
    run._reader.start()
    return run


def run_captured(argv: list[str], timeout: float = 60.0) -> str:
    """Run a short command to completion; its stdout, or a DemoError with its stderr."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DemoError(f"{' '.join(argv[:4])} … did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise DemoError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def run_shown(argv: list[str], stdout: IO[str], timeout: float = 60.0) -> None:
    """Run a command whose output the user reads, straight onto ``stdout`` (a terminal keeps colour)."""
    stdout.flush()
    try:
        done = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, env=child_env(),
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DemoError(f"{' '.join(argv[:4])} … did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise DemoError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
