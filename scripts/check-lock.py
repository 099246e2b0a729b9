"""Print the Python packages installed in this interpreter and fail if they are not requirements.lock.

Usage: python scripts/check-lock.py requirements.lock

Every package the lock names for this platform must be installed at exactly its locked version, and
nothing else may be installed but bbnet itself. Exit 1 with one line per difference otherwise.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+))?"
)
OURS = {"bbnet"}


def locked(text: str) -> dict[str, str]:
    """The lock's pins that apply to this interpreter and platform: name → version."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match is None:
            continue
        marker = match["marker"]
        if marker and not Marker(marker.strip()).evaluate():
            continue
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}


def differences(want: dict[str, str], have: dict[str, str]) -> list[str]:
    out = [f"{name}: locked {version}, not installed" for name, version in want.items() if name not in have]
    out += [
        f"{name}: locked {version}, installed {have[name]}"
        for name, version in want.items()
        if name in have and have[name] != version
    ]
    out += [
        f"{name}: installed {have[name]}, not in the lock"
        for name in have
        if name not in want | dict.fromkeys(OURS)
    ]
    return sorted(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("check-lock: error: usage: check-lock.py LOCKFILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        want = locked(path.read_text())
    except OSError as exc:
        print(f"check-lock: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    have = installed()
    print(f"check-lock: python {sys.version.split()[0]}; installed: "
          + " ".join(f"{n}=={v}" for n, v in sorted(have.items())))  # fmt: skip
    bad = differences(want, have)
    for line in bad:
        print(f"check-lock: error: {line}", file=sys.stderr)
    if bad:
        print(f"check-lock: error: the environment differs from {path}; run `make setup`", file=sys.stderr)
        return 1
    print(f"check-lock: {len(want)} packages exactly as {path} locks them")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
