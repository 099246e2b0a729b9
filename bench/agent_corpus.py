"""A multi-turn agent corpus: real first requests of three agent CLIs, grown turn by turn.

``bench/fixtures/agents/*.json.gz`` are the first request bodies Claude Code, Codex and Gemini CLI
sent (captured once, ad hoc, by pointing each CLI at ``bbnet sim`` through a reverse
``mitmdump -w``; see bench/fixtures/agents/README.md). Each is grown deterministically (a seeded
RNG) the way its CLI grows a session: an assistant turn (reasoning with its opaque blob, text, a
tool call) and the tool's result appended per turn, in the CLI's own wire shape — Claude Code
also moves its ``cache_control`` marker to the newest block, Codex stamps a new turn id in its
metadata — until the body passes ~1 MB. Tool results range from a few lines to ~60 kB of code.

The "real" input count of each turn is NOT the meter's estimator: it is the provider simulator's
documented rule (``meter.sim_plan``: 8 + Σ ceil(len/4) over strings under text keys), with the
tool-result keys the simulator does not read (``output``: Responses ``function_call_output``,
Gemini ``functionResponse``) counted too, since every provider bills tool results. Opaque blobs
(thinking signatures, encrypted reasoning) count nothing, as the providers bill them. Media are
not in this corpus (the rule cannot price them); the recordings cover them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bbnet import providers
from meter import sim_plan

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "agents"
MAX_BODY = 1_000_000
CORPUS = {
    "claude-code": providers.ANTHROPIC_MESSAGES,
    "codex": providers.OPENAI_RESPONSES,
    "gemini-cli": providers.GEMINI,
}
_COUNTED_KEYS = sim_plan.TEXT_KEYS | {"output"}
_CODE_WORDS = (
    "def", "return", "self", "import", "from", "if", "else", "for", "in", "None", "True", "value",
    "config", "result", "budget", "tokens", "pool", "request", "response", "=", "==", "(", ")",
    ":", "\"quoted\"", "'x'", "[0]", "{}", "# note", "raise", "ValueError", "async", "await",
)  # fmt: skip
_PROSE_WORDS = (
    "the", "file", "reads", "budget", "so", "I", "will", "check", "next", "function", "and", "then",
    "update", "tests", "because", "it", "fails", "when", "pool", "is", "empty", "now", "passes",
)  # fmt: skip


@dataclass(frozen=True)
class Turn:
    family: str
    body: bytes
    real_input_tokens: int


def counted_tokens(body: dict[str, Any]) -> int:
    """The corpus's real count (see the module docstring)."""
    return sim_plan.INPUT_OVERHEAD_TOKENS + sum(
        sim_plan.text_tokens(s) for s in sim_plan.text_pieces(body, keys=_COUNTED_KEYS)
    )


def _code(rng: random.Random, size: int) -> str:
    lines, n = [], 0
    while n < size:
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choice(_CODE_WORDS) for _ in range(rng.randint(2, 12)))
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines)


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_PROSE_WORDS) for _ in range(words)).capitalize() + "."


def _blob(rng: random.Random, size: int) -> str:
    return "".join(
        rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(size)
    )


def _result_size(rng: random.Random) -> int:
    return min(60_000, int(rng.lognormvariate(8.0, 1.2)))  # median ~3 kB, a long tail of big files


def _grow_claude(doc: dict[str, Any], rng: random.Random, n: int) -> None:
    for message in doc["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            block.pop("cache_control", None)
    tool = f"toolu_{n:04d}"
    doc["messages"].append({"role": "assistant", "content": [
        {"type": "thinking", "thinking": _prose(rng, rng.randint(20, 120)), "signature": _blob(rng, rng.randint(400, 2000))},
        {"type": "text", "text": _prose(rng, rng.randint(5, 60))},
        {"type": "tool_use", "id": tool, "name": rng.choice(["Read", "Bash", "Grep", "Edit"]),
         "input": {"file_path": f"/work/src/module_{rng.randint(1, 99)}.py", "description": _prose(rng, 8)}},
    ]})  # fmt: skip
    doc["messages"].append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": tool, "content": _code(rng, _result_size(rng)),
         "cache_control": {"type": "ephemeral"}},
    ]})  # fmt: skip


def _grow_codex(doc: dict[str, Any], rng: random.Random, n: int) -> None:
    call = f"call_{n:04d}"
    doc["input"] += [
        {"type": "reasoning", "summary": [], "encrypted_content": _blob(rng, rng.randint(800, 4000))},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": _prose(rng, rng.randint(5, 60))}]},
        {"type": "function_call", "name": "exec_command", "call_id": call,
         "arguments": json.dumps({"cmd": f"sed -n 1,{rng.randint(50, 900)}p src/module_{rng.randint(1, 99)}.py"})},
        {"type": "function_call_output", "call_id": call, "output": _code(rng, _result_size(rng))},
    ]  # fmt: skip
    doc["client_metadata"]["turn_id"] = f"turn-{n:04d}-{rng.getrandbits(64):016x}"


def _grow_gemini(doc: dict[str, Any], rng: random.Random, n: int) -> None:
    doc["contents"] += [
        {"role": "model", "parts": [
            {"text": _prose(rng, rng.randint(5, 60))},
            {"functionCall": {"name": "read_file", "args": {"absolute_path": f"/work/src/module_{rng.randint(1, 99)}.py"}},
             "thoughtSignature": _blob(rng, rng.randint(400, 2000))},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "read_file", "response": {"output": _code(rng, _result_size(rng))}}},
        ]},
    ]  # fmt: skip


_GROW = {"claude-code": _grow_claude, "codex": _grow_codex, "gemini-cli": _grow_gemini}


def conversation(agent: str, seed: int = 0) -> list[Turn]:
    """One agent's conversation, from its real first request to a body of about ``MAX_BODY``."""
    doc = json.loads(gzip.decompress((FIXTURES / f"{agent}.json.gz").read_bytes()))
    rng = random.Random(f"{agent}-{seed}")
    turns, n = [], 0
    while True:
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        turns.append(Turn(CORPUS[agent], body, counted_tokens(doc)))
        if len(body) >= MAX_BODY:
            return turns
        n += 1
        _GROW[agent](doc, rng, n)


def corpus(seeds: int = 3) -> dict[str, list[list[Turn]]]:
    """Every agent's conversations, ``seeds`` of each."""
    return {agent: [conversation(agent, s) for s in range(seeds)] for agent in CORPUS}


def parse_sizes(parser: argparse.ArgumentParser, text: str, known: Iterable[str]) -> list[str]:
    """A bench's ``--sizes``: comma-separated body sizes, each one of ``known``; anything else is the
    parser's one-line error (and exit 2)."""
    names = list(known)
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    if not sizes or any(s not in names for s in sizes):
        parser.error(f"--sizes: expected a comma-separated list of {','.join(names)}, got {text!r}")
    return sizes
