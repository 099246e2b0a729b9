"""Try plain TCP connections from wherever this runs (the demo runs it inside a bottle).

``python -m demo.probe NAME=HOST:PORT ... [--timeout S]`` prints one JSON object:
``{NAME: {"target": "HOST:PORT", "connected": bool, "error": "timed out" | "refused" | ...}}``.
A rule that drops packets shows as "timed out"; nothing listening shows as "refused".
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any


def parse_target(text: str) -> tuple[str, str, int]:
    """``NAME=HOST:PORT`` → (name, host, port); ValueError naming the bad part."""
    name, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not name or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid target {text!r}: expected NAME=HOST:PORT")
    return name, host, int(port)


def attempt(host: str, port: int, timeout: float) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"target": f"{host}:{port}", "connected": True, "error": None}
    except TimeoutError:
        error = "timed out"
    except ConnectionRefusedError:
        error = "refused"
    except OSError as e:
        error = e.strerror or type(e).__name__
    return {"target": f"{host}:{port}", "connected": False, "error": error}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="+", metavar="NAME=HOST:PORT")
    ap.add_argument("--timeout", type=float, default=1.0, help="seconds per connection attempt")
    args = ap.parse_args(argv)
    try:
        targets = [parse_target(t) for t in args.targets]
    except ValueError as e:
        ap.error(str(e))
    print(json.dumps({name: attempt(host, port, args.timeout) for name, host, port in targets}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
