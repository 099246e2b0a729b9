"""A real PostgreSQL server for tests and benches: Debian's binaries, a temporary data directory.

``initdb`` refuses to run as root, so the cluster is made and run as the ``postgres`` user that
Debian's package creates (the child process switches user itself, so a signal to it reaches the
server: ``runuser`` would not pass one on, and a stopped test would leave its server running); as
another user it runs as that user. The server listens on
127.0.0.1 on a free port with password (SCRAM) authentication, so a wrong password fails as it would
in production. Each test gets its own database from :meth:`PgServer.new_database`.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

USER = "bbnet"
_START_TIMEOUT_S = 60.0


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise PgUnavailable("PostgreSQL server not installed (Debian: apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postmaster:
    """The server process: stopped and started again on the same port and data directory (a test
    of the ledger going away mid-run)."""

    def __init__(self, argv: list[str], log: Path, owner: str | None) -> None:
        self.argv, self.log, self.owner = argv, log, owner
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, cwd="/", **_as_owner(self.owner)
            )

    def stop(self) -> None:
        """A "fast" shutdown: connected clients are ended, as when a server goes down."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    password: str
    datadir: Path
    postmaster: Postmaster = field(compare=False, repr=False)

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{USER}:{pw}@{self.host}:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.postmaster.stop()

    def start(self) -> None:
        """Start the server again (after :meth:`stop`) and wait until it accepts connections."""
        self.postmaster.start()
        _wait_ready(self)


def _wait_ready(server: PgServer) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            proc = server.postmaster.proc
            if proc is None or proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "PostgreSQL did not start: " + server.postmaster.log.read_text()[-2000:]
                ) from None
            time.sleep(0.1)


def _as_owner(owner: str | None) -> dict[str, Any]:
    """Popen's arguments that run the child as ``owner`` (None: as we are)."""
    if owner is None:
        return {}
    ent = pwd.getpwnam(owner)
    return {
        "user": ent.pw_uid,
        "group": ent.pw_gid,
        "extra_groups": [],
        "env": {**os.environ, "HOME": ent.pw_dir},
    }


@contextmanager
def running(*, fsync: bool = False, base: Path | None = None) -> Iterator[PgServer]:
    """Start a PostgreSQL server in a new temporary data directory; stop it and remove it after.

    ``fsync=False`` suits tests (the data is thrown away); benches pass ``fsync=True`` so commit
    latency is what a real server's is.
    """
    bins = bindir()
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="bbnet-pg-", dir=base))
    datadir = root / "data"
    password = secrets.token_urlsafe(16)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if owner:
        ent = pwd.getpwnam(owner)
        os.chown(root, ent.pw_uid, ent.pw_gid)
        os.chown(pwfile, ent.pw_uid, ent.pw_gid)
    root.chmod(0o700)
    pwfile.chmod(0o600)
    postmaster: Postmaster | None = None
    try:
        subprocess.run(
            [
                str(bins / "initdb"),
                "-D",
                str(datadir),
                "-U",
                USER,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd="/",
            **_as_owner(owner),
        )
        port = _free_port()
        postmaster = Postmaster(
            [
                str(bins / "postgres"),
                "-D",
                str(datadir),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                f"fsync={'on' if fsync else 'off'}",
                "-c",
                f"synchronous_commit={'on' if fsync else 'off'}",
                "-c",
                "full_page_writes=off" if not fsync else "full_page_writes=on",
                "-c",
                "max_connections=200",
            ],
            root / "server.log",
            owner,
        )
        postmaster.start()
        server = PgServer("127.0.0.1", port, password, datadir, postmaster)
        _wait_ready(server)
        yield server
    finally:
        if postmaster is not None:
            postmaster.stop()
        shutil.rmtree(root, ignore_errors=True)
