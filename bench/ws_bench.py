"""The meter's overhead on WebSocket traffic: the Responses API's WebSocket mode, direct to the
simulator vs bare mitmproxy vs mitmproxy + the bbnet addon, in one run.

The three processes are those of ``bench/meter_bench.py`` (the simulator with no chunk delay, the
bare proxy that only remaps hosts, the real ``bbnet meter run`` with a ledger holding the bottle
and its budgets). One socket per path stays open; each round sends, per path in turn,
``--responses`` ``response.create`` messages one after another and times each round trip (send
until ``response.completed``, 16 output events between) and its first event (``response.created``).
Every metered round trip reserves before forwarding and commits at the end. Prints JSON: per path
the median over rounds of p50/p99, the latency each proxy adds over direct, and the addon's
round trip and added latency over bare's as ratios.

Usage: python bench/ws_bench.py [--rounds N] [--responses N]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from meter_bench import PATHS, pct, processes  # the sibling script: same processes, same percentiles
from websockets.sync.client import ClientConnection, connect

MESSAGE = json.dumps({"type": "response.create", "model": "gpt-5", "max_output_tokens": 16,
                      "input": "Summarise the budget rules of this host in one short paragraph. " * 4})  # fmt: skip


def open_socket(path: str, ports: dict[str, int], ca: Path) -> ClientConnection:
    if path == "direct":
        return connect(f"ws://127.0.0.1:{ports['sim']}/v1/responses", max_size=None)
    tls = ssl.create_default_context(cafile=str(ca))
    return connect("wss://api.openai.com/v1/responses", proxy=f"http://127.0.0.1:{ports[path]}", ssl=tls,
                   additional_headers={"authorization": "Bearer sk-bench"}, max_size=None)  # fmt: skip


def round_trip(sock: ClientConnection) -> tuple[float, float]:
    """Seconds to the first event and to ``response.completed`` of one response."""
    start = time.perf_counter()
    sock.send(MESSAGE)
    first = 0.0
    while True:
        event = json.loads(sock.recv(timeout=30))
        first = first or time.perf_counter() - start
        if event["type"] in ("response.completed", "response.incomplete"):
            return first, time.perf_counter() - start
        if event["type"] == "error":
            raise SystemExit(f"ws_bench: the socket answered an error: {event}")


def one_round(sock: ClientConnection, responses: int) -> dict[str, float]:
    timings = [round_trip(sock) for _ in range(responses)]
    firsts, totals = [t[0] * 1000 for t in timings], [t[1] * 1000 for t in timings]
    return {"round_trip_p50_ms": pct(totals, 50), "round_trip_p99_ms": pct(totals, 99),
            "first_event_p50_ms": pct(firsts, 50), "first_event_p99_ms": pct(firsts, 99)}  # fmt: skip


def summarise(rounds: list[dict[str, dict[str, float]]], args: argparse.Namespace) -> dict[str, Any]:
    paths = {
        path: {k: round(statistics.median(r[path][k] for r in rounds), 3) for k in rounds[0][path]}
        for path in PATHS
    }
    added = {
        f"{name}_added_{q}_ms": round(
            paths[name][f"round_trip_{q}_ms"] - paths["direct"][f"round_trip_{q}_ms"], 3
        )
        for name in ("bare", "addon")
        for q in ("p50", "p99")
    }
    ratio = {}
    for q in ("p50", "p99"):
        ratio[f"addon_over_bare_round_trip_{q}"] = round(
            paths["addon"][f"round_trip_{q}_ms"] / paths["bare"][f"round_trip_{q}_ms"], 3
        )
        ratio[f"addon_added_over_bare_added_{q}"] = round(
            added[f"addon_added_{q}_ms"] / added[f"bare_added_{q}_ms"], 3
        )
    return {"config": {"rounds": args.rounds, "responses_per_round": args.responses, "output_events": 16},
            "paths": paths, "added": added, "ratio": ratio}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--responses", type=int, default=40)
    args = parser.parse_args()
    if args.rounds < 1 or args.responses < 1:
        raise SystemExit("ws_bench: error: --rounds and --responses must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bbnet-ws-bench-") as tmp:
        workdir = Path(tmp)
        with processes(workdir, 0, None) as ports:
            sockets = {
                path: open_socket(path, ports, workdir / "confdir" / "mitmproxy-ca-cert.pem")
                for path in PATHS
            }
            try:
                for sock in sockets.values():
                    round_trip(sock)  # warm up: TLS, first reservation
                rounds = [
                    {path: one_round(sockets[path], args.responses) for path in PATHS}
                    for _ in range(args.rounds)
                ]
            finally:
                for sock in sockets.values():
                    sock.close()
    json.dump(summarise(rounds, args), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
