"""Dashboard responsiveness with many bottles: time to first render and to apply a refresh.

    .venv/bin/python bench/dashboard_bench.py [--bottles 500] [--usage-rows 1000000] [--days 30]
        [--actions 5000] [--rounds 20]

Builds a ledger in a temporary directory (bottles and budgets through the ledger API, no kernel;
usage and action rows written straight into the ledger's own tables with ``executemany``, spread
evenly over ``--days`` up to now), runs the app headless at 80×24, and prints one JSON object of
figures in milliseconds (medians and maxima):

- ``first_render_ms``: from starting the app to the table holding every bottle, drawn;
- ``initial_poll_ms``: the first poll alone (the tally seeded from the ledger's aggregates);
- ``full_fold_ms``: what the first poll cost before seeding: every usage row tailed and folded;
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
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget, UsageRecord
from bbnet.names import Scope
from dashboard.app import Dashboard
from dashboard.feed import PAGE, LedgerFeed
from dashboard.tally import DAY, Tally, call_from_row
from dashboard.widgets import BottleTable

USAGE_INSERT = (
    "INSERT INTO usage (key, ts, bottle, agent, provider, model, host, path, input_tokens, output_tokens,"
    " cache_write_tokens, cache_read_tokens, reasoning_tokens, cost_usd, cost_micros, estimated, stream,"
    " status, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?, ?, 0, 1, 200, 900.0)"
)
ACTION_INSERT = "INSERT INTO actions (ts, bottle, action, actor, reason, result, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
CALLS = (  # provider, model, host, path, micro-USD of 800 in + 200 out (None: unpriced)
    ("anthropic", "claude-sonnet-4-5", "api.anthropic.com", "/v1/messages", 5400),
    ("openai", "gpt-4o", "api.openai.com", "/v1/chat/completions", 4000),
    ("openai", "local-finetune", "api.openai.com", "/v1/chat/completions", None),
)


def build(path: Path, bottles: int, usage_rows: int, days: float, actions: int) -> None:
    now = time.time()
    names = [f"b{i:04d}" for i in range(bottles)]
    with Ledger.open(path) as ledger:
        ledger.set_budget(Budget(Scope.global_(), "anthropic", "tokens", 10**12))
        for i, name in enumerate(names):
            ledger.add_bottle(
                Bottle(name, veth=f"bb-{name}", addresses=(f"10.243.{i // 64}.{(i % 64) * 4 + 2}/30",))
            )
            ledger.set_budget(Budget(Scope.of_bottle(name), "anthropic", "tokens", 10**9))
    rnd = random.Random(1)
    span = days * DAY
    step = span / max(1, usage_rows)

    def usage() -> Any:
        for n in range(usage_rows):
            provider, model, host, api, micros = CALLS[
                0 if n % 7 else 1 + n % 2
            ]  # one in 7 openai, half unpriced
            cost = None if micros is None else micros / 1e6
            yield (f"bench-{n}", now - span + n * step, rnd.choice(names), rnd.choice(("main", "sub")),
                   provider, model, host, api, 800, 200, cost, micros)  # fmt: skip

    conn = sqlite3.connect(path)
    try:
        conn.executemany(USAGE_INSERT, usage())
        conn.executemany(
            ACTION_INSERT,
            (
                (now - span + k * span / max(1, actions), rnd.choice(names), "cutoff", "controller",
                 "budget exhausted", "ok", 1.0)
                for k in range(actions)
            ),
        )  # fmt: skip
        conn.commit()
    finally:
        conn.close()


def full_fold_ms(path: Path) -> float:
    """The start-up before seeding: tail every usage row from the first and fold it in."""
    with Ledger.open(path, create=False) as ledger:
        started = time.perf_counter()
        tally, now = Tally(), time.time()
        while True:
            page = ledger.usage(since_id=tally.last_id, limit=PAGE)
            tally.add((call_from_row(r) for r in page), now)
            if len(page) < PAGE:
                return (time.perf_counter() - started) * 1000


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
        "full_fold_ms": round(full_fold_ms(path), 1),
        "refresh_with_commits_ms": stats(with_commits),
        "refresh_idle_ms": stats(idle),
        "redraw_ms": stats(redraw),
        "resort_ms": stats(resort),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bottles", type=int, default=500)
    parser.add_argument("--usage-rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0, help="the usage rows span this many days")
    parser.add_argument("--actions", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if args.bottles < 1 or args.usage_rows < 0 or args.days <= 0 or args.actions < 0 or args.rounds < 1:
        parser.error("expected --bottles and --rounds >= 1, --usage-rows and --actions >= 0, --days > 0")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        started = time.perf_counter()
        build(path, args.bottles, args.usage_rows, args.days, args.actions)
        build_s = time.perf_counter() - started
        figures = asyncio.run(measure(path, args.bottles, args.rounds))
        db_mb = path.stat().st_size / 1e6
    print(
        json.dumps(
            {
                "bottles": args.bottles,
                "usage_rows": args.usage_rows,
                "last_day_rows": round(args.usage_rows * min(1.0, 1 / args.days)),
                "actions": args.actions,
                "ledger_mb": round(db_mb, 1),
                "build_s": round(build_s, 1),
                "terminal": "80x24",
                **figures,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
