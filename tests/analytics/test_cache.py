"""The DuckDB copy of the calls: topped up with new commits, rebuilt for a replaced ledger, private,
and never needed: an unwritable or busy copy falls back to scanning the ledger, with the same numbers."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from analytics import cache, reports
from analytics.cache import Mark, default_cache_file, plan
from analytics.queries import Filters
from analytics.reader import open_ledger
from analytics.table import Report
from bbnet.ledger import Ledger
from bbnet.model import Bottle, UsageRecord
from tests.analytics.conftest import Built

BY = ("bottle", "model", "day")
REPORT = "import typer, sys; from analytics.cli import mount; r = typer.Typer(); mount(r); r(sys.argv[1:])"


def cost_report(path: Path, **open_args: object) -> tuple[Report, bool]:
    with open_ledger(path, **open_args) as reader:  # type: ignore[arg-type]
        return reports.cost(reader, BY, Filters(), chart=True), reader.calls is not None


def same_report(got: Report, want: Report) -> None:
    """Same groups, calls, tokens and unpriced counts; USD equal but for float summation order."""
    assert [(*row[:5], row[6]) for row in got.main.rows] == [(*row[:5], row[6]) for row in want.main.rows]
    for mine, theirs in zip(got.main.rows, want.main.rows, strict=True):
        assert mine[5] == (None if theirs[5] is None else pytest.approx(theirs[5], rel=1e-12))
    assert got.extra == want.extra and got.series is not None and want.series is not None
    assert [p[0] for p in got.series.points] == [p[0] for p in want.series.points]


@pytest.fixture
def ledger_copy(built: Built, tmp_path: Path) -> Path:
    """A private copy of the module's ledger: these tests add calls and replace files."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(built.path, path)
    return path


def commit_calls(path: Path, count: int, prefix: str) -> None:
    with Ledger.open(path) as ledger:
        for i in range(count):
            ledger.commit(f"{prefix}-{i}", UsageRecord("gamma", "coder", "openai", "gpt-4o", 1000 + i, 10))


def test_plan_decides_from_the_marks() -> None:
    ledger = Mark(2, "k1", 10, "k10")
    assert plan(None, ledger, None) == "build"
    assert plan(Mark(2, "k1", 10, "k10"), ledger, "k10") == "current"
    assert plan(Mark(2, "k1", 7, "k7"), ledger, "k7") == "top-up"
    assert plan(Mark(2, "k1", 12, "k12"), ledger, None) == "build"  # the ledger went back: reset
    assert plan(Mark(2, "k1", 7, "k7"), ledger, "other") == "build"  # a different ledger
    assert plan(Mark(2, "x1", 7, "k7"), ledger, "k7") == "build"
    assert plan(Mark(1, "k1", 7, "k7"), ledger, "k7") == "build"  # migrated since
    assert plan(Mark(2, None, 0, None), Mark(2, None, 0, None), None) == "current"
    assert plan(Mark(2, None, 0, None), ledger, None) == "build"


def test_copy_is_private_and_equals_the_direct_scan(ledger_copy: Path) -> None:
    direct, used_copy = cost_report(ledger_copy, use_cache=False)
    assert not used_copy
    first, used_copy = cost_report(ledger_copy)
    assert used_copy
    copy = default_cache_file(ledger_copy)
    assert copy.is_file() and stat.S_IMODE(copy.stat().st_mode) == 0o600
    lock = copy.with_name(copy.name + ".lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert not Path(f"{copy}.wal").exists()  # checkpointed: no usage rows left in a WAL
    again, _ = cost_report(ledger_copy)
    same_report(first, direct)
    same_report(again, direct)


def test_top_up_sees_calls_committed_after_the_copy_was_built(ledger_copy: Path) -> None:
    before, _ = cost_report(ledger_copy)
    commit_calls(ledger_copy, 25, "later")
    after, used_copy = cost_report(ledger_copy)
    direct, _ = cost_report(ledger_copy, use_cache=False)
    assert used_copy
    same_report(after, direct)
    assert sum(int(r[3] or 0) for r in after.main.rows) == sum(int(r[3] or 0) for r in before.main.rows) + 25


def test_large_tail_is_copied_through_the_scanner(ledger_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cost_report(ledger_copy)
    commit_calls(ledger_copy, 30, "many")
    monkeypatch.setattr(cache, "SMALL_TAIL_ROWS", 10)
    after, used_copy = cost_report(ledger_copy)
    direct, _ = cost_report(ledger_copy, use_cache=False)
    assert used_copy
    same_report(after, direct)


def test_a_replaced_ledger_rebuilds_the_copy(ledger_copy: Path, tmp_path: Path) -> None:
    cost_report(ledger_copy)
    commit_calls(ledger_copy, 5, "old")
    cost_report(ledger_copy)  # the copy now holds 405 calls
    other = tmp_path / "other.db"
    with Ledger.open(other) as ledger:
        ledger.add_bottle(Bottle("gamma"))
    commit_calls(other, 3, "new")  # fewer calls, other keys: the copy is of another ledger
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_copy}{suffix}").unlink(missing_ok=True)
    os.replace(other, ledger_copy)
    replaced, used_copy = cost_report(ledger_copy)
    assert used_copy
    assert sum(int(r[3] or 0) for r in replaced.main.rows) == 3
    same_report(replaced, cost_report(ledger_copy, use_cache=False)[0])


def test_unwritable_cache_dir_scans_the_ledger_with_identical_numbers(
    ledger_copy: Path, tmp_path: Path
) -> None:
    # root ignores directory modes, so the cache location is a file: nothing can be created in it
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    with open_ledger(ledger_copy, cache_dir=blocked) as reader:
        assert reader.calls is None and "report cache not used" in reader.note
        fallback = reports.cost(reader, BY, Filters(), chart=True)
    same_report(fallback, cost_report(ledger_copy, use_cache=False)[0])
    same_report(fallback, cost_report(ledger_copy)[0])


def test_a_busy_copy_falls_back_without_waiting_long(ledger_copy: Path) -> None:
    with open_ledger(ledger_copy) as holder:
        assert holder.calls is not None
        with open_ledger(ledger_copy) as second:
            assert second.calls is None and second.note == ""  # busy is not worth a note
            busy = reports.cost(second, BY, Filters(), chart=True)
        held = reports.cost(holder, BY, Filters(), chart=True)
    same_report(busy, held)


def test_concurrent_reports_both_succeed(ledger_copy: Path) -> None:
    command = [sys.executable, "-c", REPORT, "report", "cost", "--db", str(ledger_copy), "--by", ",".join(BY)]
    runs = [
        subprocess.Popen([*command, "--format", "json"], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [run.communicate(timeout=60)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0]
    documents = [json.loads(out) for out in outputs]
    assert all(len(d["rows"]) == len(documents[0]["rows"]) > 0 for d in documents)
    assert all(
        [r["calls"] for r in d["rows"]] == [r["calls"] for r in documents[0]["rows"]] for d in documents
    )
