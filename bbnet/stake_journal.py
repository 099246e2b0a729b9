"""A meter's stake journal: each call it admits from its stake, written before the call is forwarded.

A call admitted from a stake (:mod:`bbnet.stakes`) has no row of its own in the ledger until it is
committed; this file is what makes it survive ``kill -9``. One JSON line per event, appended with
one ``write(2)`` to a file opened ``O_APPEND`` (the page cache keeps it when the process dies):

* ``{"r": {...}}``: admitted; the fields of a reservation row (key, bottle, agent, provider, model,
  tokens, usd_micros, pools, created_at, input_tokens, output_seen, node);
* ``{"x": KEY}``: released (the call never reached the provider, or failed before any usage);
* ``{"c": KEY}``: committed, once its usage row is written;
* ``{"o": [KEY, N]}``: its stream had shown N output tokens (written when the meter renews).

The usage row is what settles a call (a ``c`` line may die unwritten with the meter); the lines
only say which calls may still be open. While the meter lives
it holds an exclusive ``flock`` on the file, so another process can tell a dead meter's stake at
once (:func:`owner_gone`) instead of waiting for its lease to expire. The meter rewrites the file
with only its open calls from time to time (:meth:`StakeJournal.rotate`), so it stays small.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

type Row = dict[str, Any]


class JournalInUse(Exception):
    """Another live process holds this journal."""


def _open_locked(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalInUse(f"stake journal {path} is held by another process") from None
    return fd


class StakeJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._fd = _open_locked(path, 0)
        self.lines = 0  # written since the file was last rewritten

    def _write(self, event: Mapping[str, object]) -> None:
        os.write(self._fd, orjson.dumps(event) + b"\n")
        self.lines += 1

    def admitted(self, row: Row) -> None:
        self._write({"r": row})

    def released(self, key: str) -> None:
        self._write({"x": key})

    def committed(self, key: str) -> None:
        self._write({"c": key})

    def seen(self, key: str, output_tokens: int) -> None:
        self._write({"o": [key, output_tokens]})

    def rotate(self, open_rows: Iterable[Row]) -> None:
        """Rewrite the file with only ``open_rows`` (every call not yet committed or released):
        written to a new file, locked, then renamed over the old one, so the journal is whole at
        every instant. A reader that opened the old file sees its inode is no longer the path's."""
        tmp = self.path.with_suffix(".rotating")
        fd = _open_locked(tmp, os.O_TRUNC)
        data = b"".join(orjson.dumps({"r": row}) + b"\n" for row in open_rows)
        try:
            os.write(fd, data)
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd, self.lines = fd, 0

    def close(self, remove: bool = False) -> None:
        """Stop writing; with ``remove``, delete the file first (its calls are all settled)."""
        if self._fd < 0:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1


def read(path: Path) -> dict[str, Row]:
    """The calls the journal leaves open: admitted, not released or committed, with the latest
    output seen. A torn last line (the process died mid-write) is skipped: the call it admitted was
    never forwarded."""
    rows: dict[str, Row] = {}
    with path.open("rb") as f:
        for line in f:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if "r" in event:
                rows[event["r"]["key"]] = event["r"]
            elif "x" in event:
                rows.pop(event["x"], None)
            elif "c" in event:
                rows.pop(event["c"], None)
            elif "o" in event and (row := rows.get(event["o"][0])) is not None:
                row["output_seen"] = max(int(row.get("output_seen") or 0), int(event["o"][1]))
    return rows


def owner_gone(path: Path) -> bool:
    """True when no live process holds the journal at ``path`` (or there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:  # the lock of a file the meter has since rotated away proves nothing
            return os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            return True
    finally:
        os.close(fd)
