"""`bbnet demo --no-pause` end to end, as root: what it proves, and that it leaves nothing behind —
after a full run, after a Ctrl-C in the middle of one, and after `--keep` is stopped; and that it
will not run over another installation's nftables table."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from demo import stack
from demo.scenario import CLAUDE, GPT
from tests.conftest import BBNET
from tests.demo.leftovers import MARK_VAR, host_state, marked_processes

pytestmark = [pytest.mark.root, pytest.mark.slow]


@dataclass(frozen=True)
class Run:
    before: dict[str, set[str]]  # the host before the demo
    mark: str  # in the environment of the demo and every process it starts
    work: Path  # the demo's --workdir


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """A free host for one demo run; if the run left anything behind (the test then failed),
    kill its processes and remove its bottles and table so the next test starts clean."""
    before = host_state()
    assert "table netdev bbnet" not in before["tables"], "another bbnet table is loaded"
    made = Run(before, secrets.token_hex(8), tmp_path / "work")
    yield made
    for line in marked_processes(made.mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    if host_state() != before:
        stack.teardown(made.work / "ledger.db", [CLAUDE.bottle, GPT.bottle],
                       remove_cgroup_parent="<none>" in before["cgroups"])  # fmt: skip


def _env(mark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BBNET_")}
    return {**env, MARK_VAR: mark}


def _ledger_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return con.execute(sql).fetchall()


def test_demo_cuts_off_in_the_kernel_reports_add_up_and_cleans_up(run: Run) -> None:
    before, mark, work = run.before, run.mark, run.work
    done = subprocess.run(
        [BBNET, "demo", "--no-pause", "--json", "--workdir", str(work)],
        capture_output=True, text=True, env=_env(mark), timeout=150, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] and summary["problems"] == [] and summary["cleanup_failed"] == []

    # The cutoff: the controller, for the budget, in the kernel (the veth in the cutoff set,
    # dropping the bottle's packets), and nothing got out of the bottle while it lasted.
    cutoff = summary["cutoff"]
    assert cutoff["actor"] == "controller" and cutoff["reason"].startswith("budget exhausted")
    assert cutoff["in_kernel"] and cutoff["dropped_packets"] > 0
    assert summary["probes"]["after_cutoff"] == {
        "proxy": False, "bypass": False, "api_call": "error", "neighbour_proxy": True,
    }  # fmt: skip
    for bottle in (CLAUDE.bottle, GPT.bottle):
        assert summary["probes"]["before"][bottle] == {"proxy": True, "bypass": False}
    assert summary["agents"][GPT.bottle]["denied"] == summary["agents"][GPT.bottle]["error"] == 0
    assert (
        summary["restored"]["state"] == "open"
        and summary["restored"]["ok"] == summary["restored"]["calls"] > 0
    )

    # The ledger, read here directly, agrees: the controller's cutoff then the operator's restore...
    db = work / "ledger.db"
    actions = _ledger_rows(
        db, f"SELECT action, actor FROM actions WHERE bottle = '{CLAUDE.bottle}' ORDER BY id"
    )
    kinds = [a for a, _ in actions]
    assert ("cutoff", "controller") in actions
    assert kinds.index("restore") > kinds.index("cutoff")
    assert str(actions[kinds.index("restore")][1]).startswith("operator:")
    # ...and `bbnet report cost` adds up to its usage rows, for each bottle and in total.
    report = subprocess.run([BBNET, "report", "cost", "--format", "json", "--db", str(db)],
                            capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    by_bottle = {r["bottle"]: r for r in json.loads(report.stdout)["rows"]}
    usage = _ledger_rows(db, "SELECT bottle, count(*), sum(input_tokens + output_tokens), sum(cost_usd) "
                             "FROM usage GROUP BY bottle")  # fmt: skip
    assert {b for b, *_ in usage} == {CLAUDE.bottle, GPT.bottle}
    for bottle, calls, tokens, cost in usage:
        assert (by_bottle[bottle]["calls"], by_bottle[bottle]["tokens"]) == (calls, tokens)
        assert by_bottle[bottle]["cost_usd"] == pytest.approx(cost, abs=1e-9)
    # The demo compared its report with the rows it saw, which are the ledger's first ones (a late
    # call could land after that, before the meter stops).
    assert summary["report_totals"] == summary["ledger_totals"]
    seen = _ledger_rows(db, f"SELECT count(*) FROM usage WHERE id <= {int(summary['ledger_last_id'])}")
    assert summary["ledger_totals"]["calls"] == seen[0][0] > 0

    assert host_state() == before
    assert marked_processes(mark) == []


def _wait_for_usage(db: Path, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the demo ended before its agents made a call"
        if db.exists():
            try:
                if _ledger_rows(db, "SELECT count(*) FROM usage")[0][0]:
                    return
            except sqlite3.OperationalError:  # the ledger is still being created
                pass
        time.sleep(0.1)
    raise AssertionError(f"no metered call within {timeout:.0f} s")


def test_ctrl_c_mid_run_leaves_nothing_behind(run: Run, tmp_path: Path) -> None:
    before, mark, work = run.before, run.mark, run.work
    log = (tmp_path / "demo.log").open("wb")
    process = subprocess.Popen(
        [BBNET, "demo", "--no-pause", "--workdir", str(work)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=_env(mark),
    )  # fmt: skip
    try:
        _wait_for_usage(work / "ledger.db", process, timeout=60)
        assert host_state() != before  # the bottles are up: there is something to clean
        assert len(marked_processes(mark)) >= 4  # the demo, the meter, the simulator, agents
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert "interrupted: cleaning up" in (tmp_path / "demo.log").read_text()
    assert host_state() == before
    assert marked_processes(mark) == []


def test_refuses_to_run_over_another_bbnet_table(tmp_path: Path) -> None:
    """Another installation's rules are never wiped: with bbnet's table loaded the demo stops first."""
    assert "table netdev bbnet" not in host_state()["tables"], "another bbnet table is loaded"
    subprocess.run(["nft", "add", "table", "netdev", "bbnet"], check=True)
    try:
        subprocess.run(["nft", "add", "chain", "netdev", "bbnet", "theirs"], check=True)
        before = host_state()
        done = subprocess.run([BBNET, "demo", "--no-pause", "--workdir", str(tmp_path / "work")],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              check=False)  # fmt: skip
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bbnet demo: error: ")
        assert "table 'netdev bbnet' is already loaded" in lines[0]
        assert host_state() == before
        listing = subprocess.run(["nft", "list", "table", "netdev", "bbnet"], capture_output=True, text=True,
                                 check=True).stdout  # fmt: skip
        assert "chain theirs" in listing
    finally:
        subprocess.run(["nft", "delete", "table", "netdev", "bbnet"], check=False)


def test_keep_stays_up_until_sigterm_then_cleans_up(run: Run, tmp_path: Path) -> None:
    err = tmp_path / "demo.err"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [BBNET, "demo", "--no-pause", "--keep", "--json", "--workdir", str(run.work)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=_env(run.mark),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "Still running" not in err.read_text(errors="replace"):
                assert process.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(1)
            assert process.poll() is None  # it stays up…
            up = host_state()
            assert (
                "table netdev bbnet" in up["tables"]
                and {"bbnet-demo-claude", "bbnet-demo-gpt"} <= up["netns"]
            )
            status = subprocess.run([BBNET, "status", "--json", "--db", str(run.work / "ledger.db")],
                                    capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
            assert {b["name"]: b["desired"] for b in json.loads(status.stdout)} == {
                CLAUDE.bottle: "open", GPT.bottle: "open",
            }  # fmt: skip
            process.send_signal(signal.SIGTERM)  # …until told to stop
            stdout, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, err.read_text()[-3000:]
    summary = json.loads(stdout)
    assert summary["ok"] and summary["cleanup_failed"] == []
    assert host_state() == run.before
    assert marked_processes(run.mark) == []
