"""Bottle cgroups on cgroup v2: create, join, freeze, thaw, kill, remove.

``cgroup.freeze`` and ``cgroup.kill`` are core v2 files, so no controller needs enabling. The v2
mount is found from the mount table: on a hybrid host it is not ``/sys/fs/cgroup`` itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from enforcer.errors import EnforcerError

GROUP_DIR = "bbnet"
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.001


def v2_mount(mounts: str) -> Path:
    """The cgroup2 mount point in a ``/proc/self/mounts`` text (the shortest, if several)."""
    points = [
        line.split()[1]
        for line in mounts.splitlines()
        if len(line.split()) > 2 and line.split()[2] == "cgroup2"
    ]
    if not points:
        raise EnforcerError("no cgroup v2 mount found in /proc/self/mounts")
    return Path(min(points, key=len))


def find_v2_mount() -> Path:
    return v2_mount(Path("/proc/self/mounts").read_text())


def group_for(root: Path, bottle: str) -> Path:
    return root / GROUP_DIR / bottle


def create(group: Path) -> None:
    try:
        group.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise EnforcerError(f"cgroup {group} already exists") from None
    except OSError as exc:
        raise EnforcerError(f"cannot create cgroup {group}: {exc.strerror}") from None


def add_process(group: Path, pid: int) -> None:
    (group / "cgroup.procs").write_text(f"{pid}\n")


def processes(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def _events(group: Path) -> dict[str, str]:
    lines = (group / "cgroup.events").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines if " " in line)


def _wait(group: Path, key: str, value: str, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while _events(group).get(key) != value:
        if time.monotonic() > deadline:
            raise EnforcerError(f"cgroup {group} did not become {what} within {WAIT_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)


def _require(group: Path) -> None:
    if not (group / "cgroup.events").is_file():
        raise EnforcerError(f"cgroup {group} does not exist")


def is_frozen(group: Path) -> bool:
    return _events(group).get("frozen") == "1"


def set_frozen(group: Path, frozen: bool) -> None:
    """Freeze or thaw, and wait until ``cgroup.events`` says it happened."""
    _require(group)
    (group / "cgroup.freeze").write_text("1" if frozen else "0")
    _wait(group, "frozen", "1" if frozen else "0", "frozen" if frozen else "thawed")


def kill(group: Path) -> None:
    """SIGKILL every process in the group (atomically, via ``cgroup.kill``) and wait until empty."""
    _require(group)
    (group / "cgroup.kill").write_text("1")
    _wait(group, "populated", "0", "empty")


def remove(group: Path) -> None:
    """Remove an empty group; killing what is left first. A missing group is not an error."""
    if not group.exists():
        return
    if processes(group):
        kill(group)
    group.rmdir()
