"""Real sockets in real namespaces for the enforcer tests: servers that echo, clients that try."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

IP_TRANSPARENT = 19  # lets a socket send from an address that is not local (CAP_NET_ADMIN)


def in_netns[T](netns: str | None, make: Callable[[], T]) -> T:
    """Run ``make`` on a fresh thread that has joined ``netns`` (a path); sockets it creates stay
    in that namespace. ``None`` means the host's namespace."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if netns is not None:
                fd = os.open(netns, os.O_RDONLY)
                os.setns(fd, os.CLONE_NEWNET)
                os.close(fd)
            result.append(make())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def ns(name: str) -> str:
    return str(Path("/var/run/netns") / name)


class EchoServer:
    """A TCP server that echoes every connection until closed."""

    def __init__(self, netns: str | None, address: str, port: int) -> None:
        def make() -> socket.socket:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((address, port))
            s.listen(16)
            return s

        self.sock = in_netns(netns, make)
        self.clients: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass

    def peers_of(self, address: str) -> list[socket.socket]:
        """The accepted connections from ``address`` that are still open on this (host) side."""
        alive = []
        for conn in self.clients:
            try:
                if (
                    conn.getpeername()[0] == address
                    and conn.getsockopt(socket.SOL_TCP, socket.TCP_INFO, 1)[0] == 1
                ):
                    alive.append(conn)  # TCP_INFO's first byte is the state; 1 is ESTABLISHED
            except OSError:
                continue
        return alive

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the server thread
        self.sock.close()
        for c in self.clients:
            c.close()


def connect(netns: str | None, address: str, port: int, timeout: float = 0.4) -> socket.socket | None:
    """A connected TCP socket from ``netns``, or None if the connection did not happen."""

    def make() -> socket.socket | None:
        s = socket.socket()
        s.settimeout(timeout)
        try:
            s.connect((address, port))
        except OSError:
            s.close()
            return None
        return s

    return in_netns(netns, make)


def can_connect(netns: str | None, address: str, port: int) -> bool:
    sock = connect(netns, address, port)
    if sock is None:
        return False
    sock.close()
    return True


def echoes(sock: socket.socket, payload: bytes, timeout: float) -> bool:
    """Whether ``payload`` comes back over an established connection within ``timeout`` (after
    whatever earlier data was still on its way)."""
    deadline = time.monotonic() + timeout
    got = b""
    try:
        sock.sendall(payload)
        while not got.endswith(payload):
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(4096)
            if not chunk:
                return False
            got += chunk
    except OSError:
        return False
    return True


def udp_sender(netns: str, source: str | None = None) -> socket.socket:
    """A UDP socket in ``netns``; bound to ``source`` even if that address is not local."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if source is not None:
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            s.bind((source, 0))
        return s

    return in_netns(netns, make)
