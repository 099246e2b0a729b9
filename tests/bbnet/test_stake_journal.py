"""The stake journal file (bbnet/stake_journal.py): what it leaves open, torn lines, rotation, its lock."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bbnet import stake_journal
from bbnet.stake_journal import JournalInUse, StakeJournal


def row(key: str) -> dict[str, object]:
    return {"key": key, "bottle": "b", "agent": "a", "provider": "anthropic", "model": "m", "tokens": 10,
            "usd_micros": 0, "pools": [[1, 10]], "created_at": 1.0, "input_tokens": 4, "output_seen": 0,
            "node": "n"}  # fmt: skip


def test_open_calls_are_those_neither_released_nor_committed(tmp_path: Path) -> None:
    j = StakeJournal(tmp_path / "s.journal")
    for key in ("k1", "k2", "k3"):
        j.admitted(row(key))
    j.released("k1")
    j.committed("k2")
    j.seen("k3", 7)
    j.seen("k3", 5)  # the latest renewal may lag: the most seen is kept
    open_calls = stake_journal.read(j.path)
    assert list(open_calls) == ["k3"] and open_calls["k3"]["output_seen"] == 7
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o600


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    j = StakeJournal(tmp_path / "s.journal")
    j.admitted(row("k1"))
    j.close()
    with j.path.open("ab") as f:  # the process died in the middle of the next line
        f.write(b'{"r":{"key":"k2","bottle":"b"')
    assert list(stake_journal.read(j.path)) == ["k1"]


def test_rotation_keeps_only_the_open_calls_and_the_lock(tmp_path: Path) -> None:
    j = StakeJournal(tmp_path / "s.journal")
    for key in ("k1", "k2"):
        j.admitted(row(key))
    j.committed("k1")
    before = j.path.stat().st_ino
    j.rotate([row("k2")])
    assert j.path.stat().st_ino != before and j.lines == 0
    assert j.path.read_bytes().count(b"\n") == 1
    assert list(stake_journal.read(j.path)) == ["k2"]
    assert not stake_journal.owner_gone(j.path)  # the new file is locked too
    with pytest.raises(JournalInUse):
        StakeJournal(j.path)
    j.committed("k2")
    assert stake_journal.read(j.path) == {}


def test_owner_gone_once_the_journal_is_closed(tmp_path: Path) -> None:
    j = StakeJournal(tmp_path / "s.journal")
    assert not stake_journal.owner_gone(j.path)
    j.close()
    assert stake_journal.owner_gone(j.path)
    j.close(remove=True)  # closing twice does nothing
    assert stake_journal.owner_gone(tmp_path / "never.journal")
    fd = os.open(j.path, os.O_RDONLY)  # a reader's descriptor is no owner
    try:
        assert stake_journal.owner_gone(j.path)
    finally:
        os.close(fd)
