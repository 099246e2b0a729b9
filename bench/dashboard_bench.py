"""Dashboard responsiveness with many bottles: time to first render and to apply a refresh.

    .venv/bin/python bench/dashboard_bench.py [--bottles 500] [--calls-per-bottle 20] [--rounds 20]

Builds a ledger in a temporary directory (bottles in the ledger only, no kernel), runs the app
headless at 80×24, and prints one JSON object of figures in milliseconds (medians and maxima):

- ``first_render_ms``: from starting the app to the table holding every bottle, drawn;
- ``initial_poll_ms``: of which the first poll (tailing the whole usage table once);
- ``refresh_with_commits_ms``: a meter committed a batch of calls (another connection): poll,
  rebuild rows, update the table, draw;
- ``refresh_idle_ms``: nothing changed: the poll alone (one ``PRAGMA data_version``);
- ``redraw_ms``: the once-a-second redraw (ages and projections move) with no new data;
- ``resort_ms``: a new sort order (every row replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, UsageRecord
from bbnet.names import Scope
from dashboard.app import Dashboard
from dashboard.feed import LedgerFeed
from dashboard.widgets import BottleTable


def build(path: Path, bottles: int, calls_per_bottle: int) -> None:
    now = time.time()
    with Ledger.open(path) as ledger:
        ledger.set_budget(Budget(Scope.global_(), "anthropic", "tokens", 10**12))
        for i in range(bottles):
            name = f"b{i:04d}"
            ledger.add_bottle(
                Bottle(name, veth=f"bb-{name}", addresses=(f"10.243.{i // 64}.{(i % 64) * 4 + 2}/30",))
            )
            ledger.set_budget(Budget(Scope.of_bottle(name), "anthropic", "tokens", 1_000_000))
        for k in range(calls_per_bottle):
            for i in range(bottles):
                ledger.commit(
                    f"c{k}-{i}",
                    UsageRecord(f"b{i:04d}", "main", "anthropic", "claude-sonnet-4-5", 800, 200,
                                ts=now - 6 * 3600 + k * 600 + i * 0.1, status=200),
                )  # fmt: skip
            if k % 5 == 0:
                ledger.record_action(f"b{k:04d}", "cutoff", "controller", "bench", "ok", 1.0)


def stats(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 2), "max": round(max(samples), 2)}


async def measure(path: Path, bottles: int, rounds: int) -> dict[str, Any]:
    with Ledger.open(path, create=False) as probe:
        started = time.perf_counter()
        LedgerFeed(probe).poll()
        initial_poll = (time.perf_counter() - started) * 1000

    with Ledger.open(path, create=False) as ledger, Ledger.open(path, create=False) as meter:
        started = time.perf_counter()
        app = Dashboard(ledger, refresh=3600)  # the bench drives refreshes itself
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.query_one(BottleTable)
            while table.row_count < bottles:
                await pilot.pause(0.001)
            await pilot.pause()
            first_render = (time.perf_counter() - started) * 1000

            with_commits, idle, redraw, resort = [], [], [], []
            for r in range(rounds):
                for i in range(0, bottles, max(1, bottles // 25)):  # 25 calls across the host
                    meter.commit(
                        f"live-{r}-{i}",
                        UsageRecord(f"b{i:04d}", "main", "anthropic", "claude-sonnet-4-5", 500, 100),
                    )
                t = time.perf_counter()
                app.refresh_now()
                await pilot.pause()
                with_commits.append((time.perf_counter() - t) * 1000)

                t = time.perf_counter()
                poll = app.feed.poll()
                idle.append((time.perf_counter() - t) * 1000)
                assert not poll.changed

                t = time.perf_counter()
                app.redraw()
                await pilot.pause()
                redraw.append((time.perf_counter() - t) * 1000)

                t = time.perf_counter()
                await pilot.press("s")
                await pilot.pause()
                resort.append((time.perf_counter() - t) * 1000)
    return {
        "first_render_ms": round(first_render, 1),
        "initial_poll_ms": round(initial_poll, 1),
        "refresh_with_commits_ms": stats(with_commits),
        "refresh_idle_ms": stats(idle),
        "redraw_ms": stats(redraw),
        "resort_ms": stats(resort),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bottles", type=int, default=500)
    parser.add_argument("--calls-per-bottle", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        build(path, args.bottles, args.calls_per_bottle)
        figures = asyncio.run(measure(path, args.bottles, args.rounds))
    print(
        json.dumps(
            {
                "bottles": args.bottles,
                "usage_rows": args.bottles * args.calls_per_bottle,
                "terminal": "80x24",
                **figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
