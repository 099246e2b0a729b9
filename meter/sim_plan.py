"""What the provider simulator answers, decided from the request alone (pure).

The usage rule is fixed and documented so a test can predict it exactly:

* input tokens = ``INPUT_OVERHEAD_TOKENS`` + Σ ceil(len(s) / 4) over every string in the JSON
  request body held under a key named in ``TEXT_KEYS`` (text, content, input, instructions,
  system, prompt, and Bedrock embeddings' inputText and texts), at any depth; a list under such
  a key counts each string in it;
* output tokens = min(the request's max-tokens field, the simulator's output default); the answer
  is exactly that many words (one word = one token), so a stream carries one word per delta.
  Embeddings have no output tokens.

When the request's cap is what limited the answer (cap ≤ default) the answer says so the way the
provider does (``max_tokens``, ``length``, ``incomplete``, ``MAX_TOKENS``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bbnet.providers import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_EMBED,
    BEDROCK_INVOKE,
    CODE_ASSIST,
    EMBEDDING_FAMILIES,
    GEMINI,
    GEMINI_EMBED,
    OPENAI_CHAT,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
)

TEXT_KEYS = frozenset({"text", "content", "input", "instructions", "system", "prompt", "inputText", "texts"})
INPUT_OVERHEAD_TOKENS = 8
DEFAULT_OUTPUT_TOKENS = 16
CHARS_PER_TOKEN = 4
VOCABULARY = (
    "the", "meter", "counts", "every", "token", "a", "bottle", "spends", "and", "budgets",
    "hold", "agents", "to", "what", "they", "may", "use", "before", "cutoff", "applies",
)  # fmt: skip


class SimRequestError(ValueError):
    """The request is not one the provider would accept; the message names what was wrong."""


@dataclass(frozen=True)
class Plan:
    """One simulated answer: who asked for what, and how much it costs."""

    family: str
    model: str
    stream: bool
    input_tokens: int
    output_tokens: int
    truncated: bool  # the request's max-tokens cap is what ended the answer
    cap: int | None = None  # the request's max-tokens field, echoed where the provider echoes it
    include_usage: bool = False  # OpenAI chat streams: stream_options.include_usage was true

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def pieces(self) -> tuple[str, ...]:
        """The answer as stream deltas: one word each, joined they make :attr:`text`."""
        return tuple(
            ("" if i == 0 else " ") + VOCABULARY[i % len(VOCABULARY)] for i in range(self.output_tokens)
        )

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def text_pieces(node: Any, counted: bool = False, keys: frozenset[str] = TEXT_KEYS) -> Iterator[str]:
    """Every string of a JSON value that counts as input: the strings under ``keys`` (see the
    module docstring)."""
    if isinstance(node, str):
        if counted:
            yield node
    elif isinstance(node, list):
        for item in node:
            yield from text_pieces(item, counted, keys)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from text_pieces(value, key in keys, keys)


def input_tokens(body: dict[str, Any]) -> int:
    return INPUT_OVERHEAD_TOKENS + sum(text_tokens(piece) for piece in text_pieces(body))


def _field(body: dict[str, Any], *path: str) -> Any:
    node: Any = body
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


# Where each family puts its output cap; the first present wins.
_MAX_TOKENS_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    ANTHROPIC_MESSAGES: (("max_tokens",),),
    BEDROCK_INVOKE: (("max_tokens",),),
    OPENAI_CHAT: (("max_completion_tokens",), ("max_tokens",)),
    OPENAI_RESPONSES: (("max_output_tokens",),),
    GEMINI: (("generationConfig", "maxOutputTokens"),),
    BEDROCK_CONVERSE: (("inferenceConfig", "maxTokens"),),
    CODE_ASSIST: (("request", "generationConfig", "maxOutputTokens"),),
    OPENAI_EMBEDDINGS: (),
    GEMINI_EMBED: (),
    BEDROCK_EMBED: (),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    ANTHROPIC_MESSAGES: ("model", "max_tokens", "messages"),
    BEDROCK_INVOKE: ("max_tokens", "messages"),
    OPENAI_CHAT: ("model", "messages"),
    OPENAI_RESPONSES: ("model",),
    GEMINI: ("contents",),
    BEDROCK_CONVERSE: ("messages",),
    CODE_ASSIST: ("model", "request"),
    OPENAI_EMBEDDINGS: ("model", "input"),
    GEMINI_EMBED: (),  # embedContent wants content, batchEmbedContents requests: sim_embed checks
    BEDROCK_EMBED: (),  # Titan wants inputText, Cohere texts: sim_embed checks
}


def max_tokens(family: str, body: dict[str, Any]) -> int | None:
    """The request's output cap, or None when it sets none."""
    for path in _MAX_TOKENS_FIELDS[family]:
        value = _field(body, *path)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SimRequestError(f"{'.'.join(path)}: must be a non-negative integer, got {value!r}")
        return value
    return None


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SimRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SimRequestError("request body must be a JSON object")
    return body


def is_streaming_path(family: str, path: str) -> bool:
    if family in (GEMINI, CODE_ASSIST):
        return ":streamGenerateContent" in path
    if family in (BEDROCK_CONVERSE, BEDROCK_INVOKE):
        return path.endswith(("/converse-stream", "/invoke-with-response-stream"))
    return False


def plan_request(
    family: str, path: str, body: dict[str, Any], path_model: str | None, output_default: int
) -> Plan:
    """Decide the answer to one request of ``family`` (path without query, body parsed). A model in
    the path (Gemini, Vertex, Bedrock, an Azure deployment's) stands for the body's ``model``."""
    for name in _REQUIRED[family]:
        if name == "model" and path_model is not None:
            continue
        if body.get(name) is None:
            raise SimRequestError(f"{name}: field required")
    model = path_model if path_model is not None else body.get("model")
    if not isinstance(model, str) or not model:
        raise SimRequestError("model: must be a non-empty string")
    cap = max_tokens(family, body)
    output = output_default if cap is None else min(cap, output_default)
    if family in EMBEDDING_FAMILIES:
        output = 0
    stream = is_streaming_path(family, path) or body.get("stream") is True
    include_usage = family == OPENAI_CHAT and _field(body, "stream_options", "include_usage") is True
    return Plan(
        family=family,
        model=model,
        stream=stream,
        input_tokens=input_tokens(body),
        output_tokens=output,
        truncated=cap is not None and cap <= output_default and family not in EMBEDDING_FAMILIES,
        cap=cap,
        include_usage=include_usage,
    )
