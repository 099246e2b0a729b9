"""What the real agent CLIs send out of a bottle, and what became of it, as JSON.

Each CLI (Claude Code, Codex, Gemini CLI, as tests/agents/clis.py runs them, but with Claude Code's
switches that silence its non-essential traffic left off, as a user runs it) runs ``--runs`` times in a bottle of
its own through ``bbnet serve``, with the provider simulator as every host's upstream and the host
default egress policy (LLM providers only). Every request it made ends in one of:

- ``metered``: a usage row in the ledger (a billed LLM call);
- ``free``: forwarded, an endpoint the catalogue knows bills nothing (token counts, model lists);
- ``refused``: answered by the meter itself (EGRESS_DENIED, UNMETERED), never forwarded — the
  ledger's refusals counter;
- ``allowed_unmetered_llm``: an LLM API call that reached the upstream with no usage row — the goal
  is 0;
- ``allowed_other``: anything else that reached the upstream.

The simulator sees every forwarded request, so forwarded = its count; the shares are of all five.

Usage (root, from the repository; it runs the tests' agent harness): PYTHONPATH=. python bench/agents_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from bbnet.providers import FREE
from meter.sim import start_sim
from meter.sim_route import route
from tests.agents.clis import ALL, Cli
from tests.agents.runner import no_reservations, sim_requests, start, usage
from tests.service.harness import Service, cleanup, create_bottle, eventually, remove_table

ROOT_LOCK = "/tmp/bbnet-root-tests.lock"  # the test suite's: one user of bbnet's table at a time


def quiet_off(cli: Cli) -> Cli:
    """The CLI without the environment switches that silence its non-LLM traffic (Claude Code's)."""
    silencers = {"DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER", "DISABLE_ERROR_REPORTING",
                 "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"}  # fmt: skip
    return replace(cli, env=lambda home: {k: v for k, v in cli.env(home).items() if k not in silencers})


def classify(requests: Counter[str]) -> Counter[str]:
    """What the simulator answered, by kind: LLM API calls, free calls, other."""
    kinds: Counter[str] = Counter()
    for line, count in requests.items():
        found = route(line.split(" ")[1])
        kinds["free" if found is not None and found.family == FREE else "llm" if found else "other"] += count
    return kinds


def measure(svc: Service, sim: Any, cli: Cli, runs: int, workdir: Path) -> dict[str, Any]:
    sim.reset()
    bottle = create_bottle(svc, f"bench-{cli.name}")
    codes: Counter[str] = Counter()
    exits = []
    for i in range(runs):
        run = start(svc, bottle, cli, workdir, f"{cli.name}-{i}")
        exits.append(run.wait())
    eventually(lambda: no_reservations(svc), 60, "every call committed")
    metered = len(usage(svc, bottle))
    with svc.ledger() as ledger:
        for r in ledger.refusals():
            if r["bottle"] == bottle.name:
                codes[r["code"]] += r["count"]
    seen = classify(sim_requests(sim))
    outcome = {
        "metered": metered,
        "free": seen["free"],
        "refused": sum(codes.values()),
        "allowed_unmetered_llm": max(0, seen["llm"] - metered),
        "allowed_other": seen["other"],
    }
    total = sum(outcome.values())
    return {
        "agent": cli.name,
        "runs": runs,
        "exit_codes": exits,
        "requests": total,
        **outcome,
        "refused_by_code": dict(codes),
        "shares": {k: round(v / total, 4) if total else 0.0 for k, v in outcome.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each CLI")
    args = ap.parse_args()
    missing = [str(c.binary) for c in ALL if not c.binary.exists()]
    if missing:
        raise SystemExit(f"agents_bench: error: not installed: {', '.join(missing)} (make agents)")
    results = []
    with open(ROOT_LOCK, "w") as lock, tempfile.TemporaryDirectory() as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        remove_table()
        with start_sim(chunk_delay_ms=2) as sim:
            svc = Service(Path(tmp) / "serve", sim.url, settings_text="lease_seconds: 300\n")
            with cleanup(svc):
                svc.start()
                for cli in ALL:
                    results.append(measure(svc, sim, quiet_off(cli), args.runs, Path(tmp)))
    allowed = sum(r["allowed_unmetered_llm"] for r in results)
    json.dump({"agents": results, "allowed_unmetered_llm_total": allowed, "goal_met": allowed == 0},
              sys.stdout, indent=2)  # fmt: skip
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
