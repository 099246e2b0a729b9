"""Benchmark: ``report cost --by bottle,model,day`` through DuckDB vs the same aggregation in sqlite3.

Generates a ledger of ``--rows`` usage rows over ``--bottles`` bottles and ``--days`` days (cached
under /tmp, keyed by the parameters, so re-runs skip generation), then times, in one run:

- ``duckdb_cold_s``: the real report (analytics.reports.cost) with no DuckDB copy of the calls yet:
  it builds ``<ledger>.reports.duckdb`` first (what the first report on a ledger pays);
- ``duckdb_warm_s``: the same report again, the copy topped up (nothing new) and aggregated: what
  every later report pays (the figure's goal);
- ``duckdb_direct_s``: the same report scanning the SQLite file through the attach (no copy: what
  a report pays when the copy is busy or unwritable);
- ``sqlite_s``: the same GROUP BY as plain SQL through Python's sqlite3.

Rows are written by DuckDB through the same sqlite extension (vectorised generation, one
transaction). Costs are each model's genai-prices per-token rates applied linearly (one price
lookup per model, not per row); one model is left unpriced (NULL cost), as the meter records it.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from pathlib import Path

from analytics import reports
from analytics.cache import default_cache_file
from analytics.duck import offline_duckdb, sql_string
from analytics.queries import Filters
from analytics.reader import open_ledger
from bbnet.ledger import Ledger
from bbnet.model import UsageRecord
from bbnet.prices import cost_usd

# (provider, model): the mix of calls; the last one has no price
MODELS = (
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-opus-4-1"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o3"),
    ("google", "gemini-2.5-pro"),
    ("anthropic", "bbnet-unpriced-model"),
)
AGENTS = ("planner", "coder", "reviewer")
MILLION = 1_000_000

SQLITE_COST_BY_BOTTLE_MODEL_DAY = (
    "SELECT bottle, model, CAST(ts / 86400 AS INTEGER) * 86400 AS day, count(*),"
    " sum(input_tokens + output_tokens), sum(cost_usd), sum(cost_usd IS NULL)"
    " FROM usage GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)


def per_token_rates(provider: str, model: str) -> tuple[float, float, float, float] | None:
    """USD per input, cache-read, cache-write and output token (None: unpriced), from genai-prices."""
    base = cost_usd(provider, model, UsageRecord("b", "a", provider, model, input_tokens=MILLION))
    if base is None:
        return None

    def extra(cache_read: int = 0, cache_write: int = 0, output: int = 0) -> float:
        usage = UsageRecord("b", "a", provider, model, MILLION, output, cache_write, cache_read)
        return ((cost_usd(provider, model, usage) or base) - base) / MILLION

    read = extra(cache_read=MILLION) + base / MILLION
    write = extra(cache_write=MILLION) + base / MILLION
    return base / MILLION, read, write, extra(output=MILLION)


def generate(path: Path, rows: int, bottles: int, days: int) -> float:
    """Write the ledger; returns seconds taken."""
    started = time.perf_counter()
    tmp = path.with_suffix(".partial")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    Ledger.open(tmp).close()  # the real schema, migrations and all
    rates = [(i, p, m, per_token_rates(p, m)) for i, (p, m) in enumerate(MODELS)]
    end = time.time() // 86400 * 86400
    start = end - days * 86400
    with offline_duckdb() as con:
        con.execute(f"ATTACH {sql_string(str(tmp))} AS gen (TYPE sqlite)")
        con.execute("CREATE TEMP TABLE prices (i INTEGER, provider TEXT, model TEXT, r_in DOUBLE, r_read DOUBLE,"
                    " r_write DOUBLE, r_out DOUBLE)")  # fmt: skip
        con.executemany(
            "INSERT INTO prices VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, p, m, *(r if r else (None,) * 4)) for i, p, m, r in rates],
        )
        con.execute("DROP INDEX IF EXISTS gen.usage_ts")
        con.execute("DROP INDEX IF EXISTS gen.usage_bottle_ts")
        con.execute(
            f"""
            INSERT INTO gen.usage (key, ts, bottle, agent, provider, family, model, host, path, input_tokens,
                output_tokens, cache_write_tokens, cache_read_tokens, reasoning_tokens, cost_usd, cost_micros,
                estimated, stream, status, latency_ms)
            WITH calls AS (
                SELECT r AS n, {start} + r * {days * 86400 / rows} AS ts,
                    hash(r) AS h1, hash(r + {rows}) AS h2
                FROM range({rows}) t(r)
            ), tokens AS (
                SELECT n, ts, h1, h2, (h2 % {len(MODELS)})::INTEGER AS m,
                    (500 + h1 % 20000)::BIGINT AS input, (20 + h2 % 2000)::BIGINT AS output,
                    CASE WHEN h1 % 3 = 0 THEN (h1 % 400)::BIGINT ELSE 0 END AS c_read,
                    CASE WHEN h1 % 7 = 0 THEN (h2 % 300)::BIGINT ELSE 0 END AS c_write
                FROM calls
            )
            SELECT 'bench-' || lpad(n::VARCHAR, 10, '0'), ts,
                'b' || lpad((h1 % {bottles})::VARCHAR, 4, '0'),
                ['planner', 'coder', 'reviewer'][1 + (h2 % 3)::INTEGER], p.provider, NULL, p.model, NULL, NULL,
                input + c_read + c_write, output, c_write, c_read, 0,
                input * r_in + c_read * r_read + c_write * r_write + output * r_out,
                round((input * r_in + c_read * r_read + c_write * r_write + output * r_out) * 1e6)::BIGINT,
                0, (h1 % 2)::INTEGER, 200, 100 + h2 % 5000
            FROM tokens JOIN prices p ON p.i = tokens.m
            ORDER BY n
            """
        )
        con.execute("DETACH gen")
    with sqlite3.connect(tmp) as db:  # the schema's indexes, built once over sorted data
        db.execute("CREATE INDEX usage_ts ON usage(ts)")
        db.execute("CREATE INDEX usage_bottle_ts ON usage(bottle, ts)")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(tmp, path)
    for leftover in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    return time.perf_counter() - started


def timed_duckdb_report(path: Path, use_cache: bool = True) -> tuple[float, int, bool]:
    """Seconds for the cost report, its group count, and whether it read the DuckDB copy."""
    started = time.perf_counter()
    with open_ledger(path, use_cache=use_cache) as reader:
        report = reports.cost(reader, ("bottle", "model", "day"), Filters())
        cached = reader.calls is not None
    return time.perf_counter() - started, len(report.main.rows), cached


def timed_sqlite(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(SQLITE_COST_BY_BOTTLE_MODEL_DAY).fetchall()
    return time.perf_counter() - started, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--bottles", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path("/tmp"), help="where the generated ledger is kept"
    )
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    path = args.cache_dir / f"bbnet-report-bench-{args.rows}r-{args.bottles}b-{args.days}d.db"
    generate_s = None if path.exists() else generate(path, args.rows, args.bottles, args.days)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM usage").fetchone()
    cache = default_cache_file(path.absolute())
    cache.unlink(missing_ok=True)
    cold_s, cold_groups, cold_cached = timed_duckdb_report(path)
    warm = [timed_duckdb_report(path) for _ in range(args.warm_runs)]
    warm_s = min(s for s, _, _ in warm)
    direct_s, direct_groups, _ = timed_duckdb_report(path, use_cache=False)
    sqlite_s, sqlite_groups = timed_sqlite(path)
    print(
        json.dumps(
            {
                "bench": "report cost --by bottle,model,day",
                "rows": count,
                "bottles": args.bottles,
                "days": args.days,
                "ledger": str(path),
                "ledger_bytes": path.stat().st_size,
                "cache_bytes": cache.stat().st_size,
                "generate_s": None if generate_s is None else round(generate_s, 2),
                "duckdb_cold_s": round(cold_s, 3),
                "duckdb_warm_s": round(warm_s, 3),
                "duckdb_warm_runs_s": [round(s, 3) for s, _, _ in warm],
                "duckdb_direct_s": round(direct_s, 3),
                "sqlite_s": round(sqlite_s, 3),
                "speedup_warm": round(sqlite_s / warm_s, 2),
                "speedup_cold": round(sqlite_s / cold_s, 2),
                "groups": cold_groups,
                "groups_match": cold_groups == sqlite_groups == direct_groups
                and all(g == cold_groups for _, g, _ in warm),
                "read_the_copy": cold_cached and all(c for _, _, c in warm),
                "goal_met": warm_s <= 2.0 and sqlite_s / warm_s >= 5,
                "threads": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
