"""End a bottle's established TCP connections on the host when it is cut off.

The cutoff set drops a bottle's packets at once, but the sockets on the host side (the meter's
client connections) would stay open: a call in flight keeps its upstream stream, and so the
provider's meter, running; and a request the agent sent just before the cut, which its kernel keeps
retransmitting after the agent gave up, would reach the meter and be answered (and billed) once
the bottle is restored. So cutting off also closes every host-side TCP socket whose peer is one of
the bottle's addresses, with ``ss --kill`` (iproute2, the kernel's SOCK_DESTROY). The meter then
sees each of those calls fail: it commits what a stream showed, or releases the hold, and drops the
upstream connection. The bottle's retransmissions after a restore meet a reset, not a live socket.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address

log = logging.getLogger("bbnet.enforcer")


def peer_filter(addresses: Sequence[IPv4Address]) -> list[str]:
    """``ss`` filter tokens matching sockets whose remote end is one of ``addresses``.

    The addresses are ``IPv4Address`` values, so nothing but dotted quads reaches the command line.
    """
    tokens: list[str] = []
    for address in addresses:
        if not isinstance(address, IPv4Address):
            raise TypeError(f"not an IPv4 address: {address!r}")
        tokens += [*(["or"] if tokens else []), "dst", str(address)]
    return ["(", *tokens, ")"]


def _ss(*args: str) -> list[str]:
    done = subprocess.run(
        ["ss", "-H", "-t", "-n", *args], capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"ss exited with {done.returncode}")
    return [line for line in done.stdout.splitlines() if line.strip()]


def end_flows(addresses: Sequence[IPv4Address]) -> int:
    """Close every host TCP socket connected to one of ``addresses``; how many it closed.

    Never raises: the cut itself is already in place, and this only ends what it stopped. A kernel
    without SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY) leaves the sockets; that is logged.
    """
    if not addresses:
        return 0
    match = peer_filter(addresses)
    try:
        closed = len(_ss("-K", *match))
        left = len(_ss("state", "established", *match))
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("could not end the connections of %s: %s", ", ".join(map(str, addresses)), e)
        return 0
    if left:
        log.warning("%d connections of %s stay open: the kernel cannot close them (CONFIG_INET_DIAG_DESTROY)",
                    left, ", ".join(map(str, addresses)))  # fmt: skip
    return closed
