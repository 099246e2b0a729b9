"""A real PostgreSQL server for tests and benches: Debian's binaries, a temporary data directory.

``initdb`` refuses to run as root, so the cluster is made and run as the ``postgres`` user that
Debian's package creates (``runuser``); as another user it runs as that user. The server listens on
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
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    password: str
    datadir: Path

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{USER}:{pw}@{self.host}:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_owner(owner: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


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
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            _as_owner(
                owner,
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
            ),
            check=True,
            capture_output=True,
            cwd="/",
        )
        port = _free_port()
        log = open(root / "server.log", "wb")  # noqa: SIM115 - closed with the server
        proc = subprocess.Popen(
            _as_owner(
                owner,
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
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
        log.close()
        server = PgServer("127.0.0.1", port, password, datadir)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(server.url(), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start: " + (root / "server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.1)
        yield server
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: clients still connected are ended
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
