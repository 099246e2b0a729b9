"""The meter's own CPU per call on agent-sized bodies: the addon's hooks, in process, on corpus turns.

What bench/meter_bench.py measures end to end (addon vs bare mitmproxy over TLS) is this CPU plus
scheduling: on a loaded 2-core host the end-to-end figures swing by milliseconds, the CPU a hook
takes on the event loop much less. Each call here is a real ``mitmproxy`` flow through the real
:class:`meter.addon.Meter` with a real SQLite ledger (tokens and USD budgets, global and per
bottle): ``request`` (attribute, read the body, estimate, reserve) and ``response`` (read usage,
commit, learn), timed by the thread's CPU clock. Bodies: per size, ``TURNS`` consecutive turns of
each agent's conversation (bench/agent_corpus.py) from that size on, sent in order, ``--passes``
times over (the first pass teaches the meter; later passes are timed). Reserve and commit are
also timed on their own (the SQLite part: statements and their transaction). The ledger's WAL is
checkpointed on a thread, as the meter does (bbnet/checkpoint.py). Each is run twice: with the
meter's stake (meter/stake.py: a call is admitted in memory and journalled when the stake's free
room covers it, as ``bbnet meter run`` does on a SQLite ledger) and without one (every call
reserved in the ledger, as with ``stakes: false``).

Prints JSON: per size, agent and admission (``stake``, ``ledger``), p50/p99 ms of the request
hook, of its reserve, of the answer's hooks (commit and learning) and of the commit alone, and
how many timed calls the stake admitted with no ledger write.

Usage: python bench/hook_bench.py [--passes N] [--sizes 50k,250k,1m]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agent_corpus
from mitmproxy import http
from mitmproxy.test import tflow

from bbnet.ledger import Ledger
from bbnet.model import MICROS_PER_USD, Bottle, Budget, StakeReserve, Write
from bbnet.names import Scope
from meter.addon import Meter
from meter.stake import Stake

JSON = http.Headers([(b"content-type", b"application/json")])
SIZES = {"50k": 50_000, "250k": 250_000, "1m": 1_000_000}
TURNS = 8
ROUTES = {
    "claude-code": ("api.anthropic.com", "/v1/messages"),
    "codex": ("api.openai.com", "/v1/responses"),
    "gemini-cli": ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:generateContent"),
}
ANSWERS = {
    "claude-code": '{"id":"m","type":"message","role":"assistant","model":"claude-opus-5-5","content":[],'
    '"usage":{"input_tokens":%d,"output_tokens":5}}',
    "codex": '{"id":"r","object":"response","model":"gpt-6.1-sol","output":[],'
    '"usage":{"input_tokens":%d,"output_tokens":5}}',
    "gemini-cli": '{"candidates":[],"usageMetadata":{"promptTokenCount":%d,"candidatesTokenCount":5}}',
}


class Timed:
    """The ledger, with the CPU time of its commits noted (the reserve is timed at the meter's
    ``reserve``, which admits from the stake or asks the ledger)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.commit_ms: list[float] = []
        self.ledger_reserves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def _timed(self, out: list[float], call: Callable[..., Any], *args: Any) -> Any:
        t0 = time.thread_time()
        try:
            return call(*args)
        finally:
            out.append((time.thread_time() - t0) * 1000)

    def reserve(self, *args: Any) -> Any:
        self.ledger_reserves += 1
        return self._ledger.reserve(*args)

    def commit(self, *args: Any) -> Any:
        return self._timed(self.commit_ms, self._ledger.commit, *args)

    def write_batch(self, writes: list[Write]) -> Any:
        """The meter's commits (outside an event loop, one per batch), or a reserve the stake asks for."""
        if any(isinstance(w, StakeReserve) for w in writes):
            self.ledger_reserves += 1
            return self._ledger.write_batch(writes)
        return self._timed(self.commit_ms, self._ledger.write_batch, writes)


def one_call(meter: Meter, agent: str, turn: agent_corpus.Turn) -> tuple[float, float]:
    host, path = ROUTES[agent]
    flow = tflow.tflow()
    flow.client_conn.peername = ("127.0.0.1", 40000)
    flow.request = http.Request.make("POST", f"https://{host}{path}", turn.body, JSON)
    t0 = time.thread_time()
    meter.request(flow)
    t1 = time.thread_time()
    if flow.response is not None:
        raise SystemExit(f"hook_bench: {agent} call refused: {flow.response.status_code}")
    answer = (ANSWERS[agent] % turn.real_input_tokens).encode()
    flow.response = http.Response.make(200, answer, JSON)
    t2 = time.thread_time()
    meter.responseheaders(flow)
    meter.response(flow)  # outside an event loop the commit is written inline, so it is timed too
    t3 = time.thread_time()
    return (t1 - t0) * 1000, (t3 - t2) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 3)


def figures(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values), 3), "p99_ms": pct(values, 99)}


def run(size: int, agent: str, passes: int, workdir: Path, stake: bool) -> dict[str, Any]:
    turns = agent_corpus.conversation(agent)
    at = next((i for i, t in enumerate(turns) if len(t.body) >= size), len(turns) - 1)
    window = turns[max(0, min(at - TURNS // 2, len(turns) - TURNS)) :][:TURNS]
    db = workdir / f"{agent}-{size}-{'stake' if stake else 'ledger'}.db"
    ledger = Ledger.open(db)
    ledger.add_bottle(Bottle("bench", addresses=("127.0.0.1/32",)))
    ledger.set_budget(Budget(Scope.global_(), "*", "tokens", 10**15))
    ledger.set_budget(Budget(Scope.global_(), "*", "usd", 10**6 * MICROS_PER_USD, period="month"))
    ledger.set_budget(Budget(Scope.of_bottle("bench"), "*", "tokens", 10**14, period="day"))
    checkpoints = ledger.checkpoint_in_background()  # as the meter runs it (meter/addon.py: running)
    timed = Timed(ledger)
    meter = Meter(timed)  # type: ignore[arg-type]  # the ledger, timed
    if stake:  # as Meter.running opens it (that needs an event loop for its other tasks)
        meter.use_stake(Stake(timed, db.with_name(db.name + ".stakes"), meter.lease_seconds))  # type: ignore[arg-type]
    reserve_ms: list[float] = []
    meter.reserve = functools.partial(timed._timed, reserve_ms, meter.reserve)  # type: ignore[method-assign]
    for turn in window:  # the first pass: the meter learns the conversation
        one_call(meter, agent, turn)
    reserve_ms.clear()
    timed.commit_ms.clear()
    timed.ledger_reserves = 0
    calls = [one_call(meter, agent, turn) for _ in range(passes) for turn in window]
    if meter.stake is not None:
        meter.stake.close()
    if checkpoints is not None:
        checkpoints.stop()
    ledger.close()
    return {
        "body_bytes_p50": round(statistics.median(len(t.body) for t in window)),
        "request_hook": figures([c[0] for c in calls]),
        "of_which_reserve": figures(reserve_ms),
        "answer_hooks": figures([c[1] for c in calls]),
        "of_which_commit": figures(timed.commit_ms),
        "calls": len(calls),
        "admitted_in_memory": len(calls) - timed.ledger_reserves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated, of " + ",".join(SIZES))
    args = parser.parse_args()
    sizes = agent_corpus.parse_sizes(parser, args.sizes, SIZES)
    with tempfile.TemporaryDirectory(prefix="hook-bench-") as tmp:
        out = {
            size: {
                agent: {
                    admission: run(SIZES[size], agent, args.passes, Path(tmp), admission == "stake")
                    for admission in ("stake", "ledger")
                }
                for agent in agent_corpus.CORPUS
            }
            for size in sizes
        }
    print(json.dumps({"config": {"passes": args.passes, "turns_per_agent": TURNS, "clock": "thread CPU time"},
                      "sizes": out}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
