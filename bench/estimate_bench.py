"""Print the input-token estimator's errors as JSON: one-shot and multi-turn (learned).

Usage: .venv/bin/python bench/estimate_bench.py [SHARED_DIR]   (default: ../shared beside the repo)

- ``recordings``: the shared recordings (real provider answers). One-shot is the heuristic
  (meter/estimate.py) on every call. Multi-turn groups calls into conversations by the part of
  ``truth.jsonl``'s ``source`` before ``#``; each follow-up call is estimated by the learning memory
  (meter/prefix.py) taught every earlier call of its conversation with its real count, and
  compared with the heuristic on the same follow-up calls.
- ``agents``: real first requests of Claude Code, Codex and Gemini CLI grown turn by turn to ~1 MB
  (bench/agent_corpus.py). Their "real" count is the simulator's documented rule
  (meter.sim_plan, with tool-result ``output`` keys counted), not the meter's estimator.

``reference_hybrid`` is a costlier design kept for comparison, not used by the meter: the previous
call's real count + heuristic(new body) - heuristic(previous body) (two JSON walks per call).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import agent_corpus

from meter import estimate
from meter.prefix import PrefixMemory

Case = tuple[str, bytes, int]


def multi_turn(conversations: Iterable[list[Case]]) -> dict[str, object]:
    """Follow-up calls of each conversation: the heuristic alone vs the learned estimate."""
    one_shot: list[Case] = []
    errors: list[float] = []
    hybrid: list[float] = []  # reference: previous call's real count + heuristic(new) - heuristic(previous)
    learned_s = heuristic_s = 0.0
    fell_back = 0
    for calls in conversations:
        memory = PrefixMemory()
        for i, (family, body, real) in enumerate(calls):
            if i > 0 and real > 0:
                started = time.perf_counter()
                guess = memory.estimate("b", "a", body)
                learned_s += time.perf_counter() - started
                started = time.perf_counter()
                heuristic = estimate.input_tokens_from_bytes(family, body)
                heuristic_s += time.perf_counter() - started
                if guess is None:
                    fell_back += 1
                    guess = heuristic
                errors.append((guess - real) / real)
                one_shot.append((family, body, real))
                previous = calls[i - 1]
                moved = heuristic - estimate.input_tokens_from_bytes(previous[0], previous[1])
                hybrid.append((max(1, previous[2] + moved) - real) / real)
            memory.learn("b", "a", body, real)
    if not errors:
        raise ValueError("no follow-up calls to measure")
    n = len(errors)
    return {
        "follow_up_calls": n,
        "one_shot_heuristic": estimate.error_distribution(one_shot).as_dict(),
        "learned": estimate.distribution(errors).as_dict(),
        "learned_fell_back_to_heuristic": fell_back,
        "reference_hybrid": estimate.distribution(hybrid).as_dict(),
        "us_per_learned_estimate": round(learned_s / n * 1e6, 1),
        "us_per_heuristic_estimate_incl_json_parse": round(heuristic_s / n * 1e6, 1),
    }


def recordings_conversations(cases: list[Case], truth: Path) -> list[list[Case]]:
    sources = [json.loads(line)["source"] for line in truth.read_text().splitlines() if line.strip()]
    groups: dict[str, list[tuple[int, Case]]] = {}
    for source, case in zip(sources, cases, strict=True):
        name, _, index = source.partition("#")
        groups.setdefault(name, []).append((int(index or 0), case))
    return [[c for _, c in sorted(g, key=lambda x: x[0])] for g in groups.values() if len(g) > 1]


def main() -> None:
    default = os.environ.get("BBNET_SHARED") or Path(__file__).resolve().parents[2] / "shared"
    recordings = Path(sys.argv[1] if len(sys.argv) > 1 else default) / "fixtures" / "recordings"
    truth = recordings / "truth.jsonl"
    cases = estimate.recorded_cases(recordings / "recordings.har", truth)
    families = sorted({family for family, _, _ in cases})
    started = time.perf_counter()
    overall = estimate.error_distribution(cases)
    elapsed = time.perf_counter() - started
    agents = agent_corpus.corpus()
    report = {
        "estimators": {
            "one_shot": "meter.estimate.input_tokens (heuristic)",
            "learned": "meter.prefix.PrefixMemory (known real count + changed bytes; heuristic on a first call)",
        },
        "recordings": {
            "real_count": "the provider's own usage, recorded",
            "one_shot": {
                "overall": overall.as_dict(),
                "by_family": {
                    family: estimate.error_distribution(c for c in cases if c[0] == family).as_dict()
                    for family in families
                },
                "us_per_estimate_incl_json_parse": round(elapsed / len(cases) * 1e6, 1),
            },
            "multi_turn": multi_turn(recordings_conversations(cases, truth)),
        },
        "agents": {
            "real_count": "simulator rule meter.sim_plan.input_tokens + tool-result 'output' keys "
            "(bench/agent_corpus.py), not the meter's estimator",
            "conversations": {a: [len(c) for c in convs] for a, convs in agents.items()},
            "largest_body_bytes": max(len(t.body) for convs in agents.values() for c in convs for t in c),
            "multi_turn": multi_turn(
                [(t.family, t.body, t.real_input_tokens) for t in c]
                for convs in agents.values()
                for c in convs
            ),
            "by_agent": {
                agent: multi_turn([(t.family, t.body, t.real_input_tokens) for t in c] for c in convs)
                for agent, convs in agents.items()
            },
        },
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
