"""The proxy's CPU per call: bare mitmproxy vs mitmproxy + the bbnet addon, by body size.

Latency on a shared 2-core host swings by milliseconds from one minute to the next; the CPU the
proxy process spends per call swings much less, and it is what bounds requests/s. Same processes
as bench/meter_bench.py (the simulator, a bare proxy with only the upstream remap, the real
``bbnet meter run`` with a ledger holding the bottle and its budgets), one keep-alive client over
TLS sending JSON calls one after another; per round and path, the process's user + system CPU
(``/proc/PID/stat``, all its threads: the meter's checkpoint thread too) over ``--calls`` calls,
and the wall time. Rounds alternate bare and addon. Prints JSON: per size and path the median over
rounds of CPU ms per call (and the system part of it: the kernel's, as in SQLite's writes) and
wall ms per call, then what the addon adds (ms and ratio).

Usage: python bench/cpu_bench.py [--rounds N] [--calls N] [--sizes small,50k,250k,1m]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import agent_corpus
import meter_bench as mb

WARMUP_CALLS = 20  # connections set up, the meter's prefix memory taught: not counted


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU of a process and all its threads, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def one_round(
    work: mb.Workload, path: str, ports: dict[str, int], pid: int, ca: Path, calls: int
) -> dict[str, float]:
    with mb.client_for(path, ports, ca) as client:
        for call in work.json[:WARMUP_CALLS]:
            mb.post(client, call)
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for i in range(calls):
            mb.post(client, work.json[i % len(work.json)])
        cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
    user, system = (1000 * (after - before) / calls for after, before in zip(cpu1, cpu0, strict=True))
    return {
        "cpu_ms_per_call": user + system,
        "of_which_system_ms": system,
        "wall_ms_per_call": 1000 * (wall1 - wall0) / calls,
    }


def summarise(rounds: list[dict[str, dict[str, float]]]) -> dict[str, object]:
    paths = {
        path: {k: round(statistics.median(r[path][k] for r in rounds), 3) for k in rounds[0][path]}
        for path in mb.PATHS
    }
    bare, addon = paths["bare"], paths["addon"]
    return {
        "paths": paths,
        "addon_vs_bare": {
            "cpu_added_ms_per_call": round(addon["cpu_ms_per_call"] - bare["cpu_ms_per_call"], 3),
            "cpu_ratio": round(addon["cpu_ms_per_call"] / bare["cpu_ms_per_call"], 3),
            "of_which_system_ms": round(addon["of_which_system_ms"] - bare["of_which_system_ms"], 3),
            "wall_added_ms_per_call": round(addon["wall_ms_per_call"] - bare["wall_ms_per_call"], 3),
        },
        "per_round_cpu_added_ms": [
            round(r["addon"]["cpu_ms_per_call"] - r["bare"]["cpu_ms_per_call"], 3) for r in rounds
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--calls", type=int, default=400, help="calls per round and path (CPU is read in 10 ms ticks)"
    )
    parser.add_argument("--sizes", default="small,50k", help="comma-separated, of " + ",".join(mb.SIZES))
    args = parser.parse_args()
    sizes = agent_corpus.parse_sizes(parser, args.sizes, mb.SIZES)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    work = mb.workloads(sizes)
    out: dict[str, object] = {"config": {"rounds": args.rounds, "calls": args.calls, "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="cpu-bench-") as tmp:
        workdir = Path(tmp)
        pids: dict[str, int] = {}
        with mb.processes(workdir, 0, None, pids) as ports:
            ca = workdir / "confdir" / "mitmproxy-ca-cert.pem"
            for w in work:
                rounds = [
                    {path: one_round(w, path, ports, pids[path], ca, args.calls) for path in mb.PATHS}
                    for _ in range(args.rounds)
                ]
                out[w.size] = {"body_bytes_p50": w.body_bytes, **summarise(rounds)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
