"""What the demo may leave on the host, read straight from the kernel's and procfs' own views."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from enforcer import cgroups

MARK_VAR = "DEMO_TEST_MARK"


def host_state() -> dict[str, set[str]]:
    """Network namespaces, bb-* interfaces, bottle cgroups and nftables tables, as sets of names."""
    netns_dir = Path("/var/run/netns")
    group_dir = cgroups.find_v2_mount() / cgroups.GROUP_DIR
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    return {
        "netns": set(os.listdir(netns_dir)) if netns_dir.is_dir() else set(),
        "links": {n for n in os.listdir("/sys/class/net") if n.startswith("bb-")},
        "cgroups": {p.name for p in group_dir.iterdir() if p.is_dir()} if group_dir.is_dir() else {"<none>"},
        "tables": {line.strip() for line in tables.splitlines() if line.strip()},
    }


def marked_processes(mark: str) -> list[str]:
    """Every live process whose environment carries ``DEMO_TEST_MARK=mark``: the demo and all its
    descendants inherit it, whatever session or namespace they moved to."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(
                    f"{entry.name}: {(entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()[:200]}"
                )
        except OSError:  # exited meanwhile, or a kernel thread
            continue
    return found
