"""A fast input-token estimate from a request body, for the reservation made before forwarding.

No tokenizer (they are per-model, slow to load, and unavailable for most providers): a documented
byte-count heuristic, tuned on the real recordings in ``shared/fixtures/recordings`` and measured
against them by :func:`error_distribution` (``bench/estimate_bench.py`` prints it; a test bounds it).

The heuristic, per request:

- prose (message text, system prompts, instructions, tool results): ``len(text) / CHARS_PER_TOKEN``;
- structured JSON (tool definitions, response schemas, tool-call arguments): its compact JSON
  length ``/ JSON_CHARS_PER_TOKEN`` — providers re-render schemas far more compactly than JSON
  (OpenAI as TypeScript-like declarations), so a JSON character is worth much less than prose;
- per JSON object in the conversation (messages, content parts: role markers, separators):
  ``PER_MESSAGE``;
- tools: ``PER_TOOL`` each, plus a one-off ``TOOLS_PREAMBLE`` (Anthropic adds a hidden system
  prompt of a few hundred tokens whenever tools are present);
- images: ``PER_IMAGE`` each (a typical ~1 megapixel image; real cost depends on size);
  documents (PDF etc. as base64): ``PER_DOCUMENT_PAGE_BYTES`` of decoded bytes per page-ish;
- opaque blobs the provider does not bill as input (thinking signatures, encrypted reasoning) are
  skipped.

The constants were chosen by a grid search minimising the median absolute relative error on the
237 recorded calls (p50 0.29, p90 0.93; the tail is server-side tools — web search, web fetch,
image generation — whose fetched content counts as input but is not in the request, so no
body-based estimate can see it). The reservation adds the full output cap on top, which dwarfs
the input error for typical calls.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bbnet import providers
from meter.usage import Usage

CHARS_PER_TOKEN = 3.5
JSON_CHARS_PER_TOKEN = 8.0
PER_MESSAGE = 2
PER_TOOL = 4
TOOLS_PREAMBLE = {providers.ANTHROPIC_MESSAGES: 450, providers.BEDROCK_CONVERSE: 450}
BASE = 3
PER_IMAGE = 1_200
PER_DOCUMENT_BYTES_PER_TOKEN = 40  # a PDF page is roughly 50-100 kB of base64 and ~1500-2500 tokens

# Fields that hold prose, structure, or media; everything else in a body is parameters.
_PROSE_KEYS = (
    "messages",
    "system",
    "input",
    "instructions",
    "contents",
    "systemInstruction",
    "prompt",
    "content",
    "requests",
    "inputText",
    "texts",
)  # the last four: embedding requests
_JSON_KEYS = ("tools", "tool_choice", "response_format", "text", "toolConfig", "generationConfig")
_SKIPPED_KEYS = frozenset({"signature", "encrypted_content", "thoughtSignature", "id", "call_id", "type"})
_JSON_VALUE_KEYS = frozenset({"arguments", "input", "args", "parameters", "input_schema", "schema"})


@dataclass
class _Tally:
    prose: int = 0
    json: int = 0
    parts: int = 0
    images: int = 0
    document_bytes: int = 0


def _is_image(key: str, value: str, parent: dict[str, Any]) -> bool:
    media = str(parent.get("media_type") or parent.get("mimeType") or parent.get("mime_type") or "")
    if value.startswith("data:image") or media.startswith("image"):
        return True
    return key in ("image_url", "url") and (value.startswith("http") or value.startswith("data:"))


def _walk(node: object, tally: _Tally, key: str = "", parent: dict[str, Any] | None = None) -> None:
    if isinstance(node, str):
        if key in _SKIPPED_KEYS:
            return
        if parent is not None and _is_image(key, node, parent):
            tally.images += 1
        elif key in ("data", "file_data", "bytes") and len(node) > 256:
            tally.document_bytes += len(node) * 3 // 4  # base64 → bytes
        else:
            tally.prose += len(node)
    elif isinstance(node, dict):
        tally.parts += 1
        for k, v in node.items():
            if k in _JSON_VALUE_KEYS and isinstance(v, dict | list):
                tally.json += _json_len(v)
            else:
                _walk(v, tally, k, node)
    elif isinstance(node, list):
        for item in node:
            _walk(item, tally, key, parent)


def _json_len(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def input_tokens(family: str, body: dict[str, Any]) -> int:
    """Estimated input tokens of a request (see the module docstring for the heuristic)."""
    if family == providers.CODE_ASSIST and isinstance(body.get("request"), dict):
        body = body["request"]  # the Gemini request inside Code Assist's envelope
    tally = _Tally()
    for key in _PROSE_KEYS:
        if key in body:
            _walk(body[key], tally, key)
    structured = sum(_json_len(body[k]) for k in _JSON_KEYS if k in body)
    tools = body.get("tools")
    n_tools = len(tools) if isinstance(tools, list) else 0
    estimate = (
        BASE
        + tally.prose / CHARS_PER_TOKEN
        + (tally.json + structured) / JSON_CHARS_PER_TOKEN
        + PER_MESSAGE * tally.parts
        + PER_TOOL * n_tools
        + (TOOLS_PREAMBLE.get(family, 0) if n_tools else 0)
        + PER_IMAGE * tally.images
        + tally.document_bytes / PER_DOCUMENT_BYTES_PER_TOKEN
    )
    return max(1, round(estimate))


def input_tokens_from_bytes(family: str, body: bytes) -> int:
    """The estimate for a raw body; a body that is not a JSON object counts as prose."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return max(1, round(BASE + len(body) / CHARS_PER_TOKEN))
    return input_tokens(family, doc)


@dataclass(frozen=True)
class ErrorDistribution:
    """Relative error ``(estimate - real) / real`` over a set of calls."""

    n: int
    p50_abs: float
    p90_abs: float
    max_abs: float
    bias: float  # median signed error: > 0 means the estimate runs high

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "p50_abs_rel_error": round(self.p50_abs, 4),
            "p90_abs_rel_error": round(self.p90_abs, 4),
            "max_abs_rel_error": round(self.max_abs, 4),
            "median_signed_rel_error": round(self.bias, 4),
        }


def error_distribution(cases: Iterable[tuple[str, bytes, int]]) -> ErrorDistribution:
    """Measure the estimator on (family, request body, real input tokens) cases."""
    return distribution(
        (input_tokens_from_bytes(family, body) - real) / real for family, body, real in cases if real > 0
    )


def distribution(relative_errors: Iterable[float]) -> ErrorDistribution:
    """The distribution of relative errors ``(estimate - real) / real``."""
    errors = list(relative_errors)
    if not errors:
        raise ValueError("no cases with real input tokens to measure the estimate against")
    absolute = sorted(abs(e) for e in errors)
    return ErrorDistribution(
        n=len(errors),
        p50_abs=statistics.median(absolute),
        p90_abs=absolute[min(len(absolute) - 1, int(0.9 * len(absolute)))],
        max_abs=absolute[-1],
        bias=statistics.median(errors),
    )


def recorded_cases(har_path: Path, truth_path: Path) -> list[tuple[str, bytes, int]]:
    """(family, request body, real input tokens) for each entry of a HAR and its truth.jsonl."""
    entries = json.loads(har_path.read_text())["log"]["entries"]
    truths = [json.loads(line) for line in truth_path.read_text().splitlines() if line.strip()]
    if len(entries) != len(truths):
        raise ValueError(f"{har_path} has {len(entries)} entries but {truth_path} has {len(truths)} lines")
    return [
        (
            truth["family"],
            entry["request"].get("postData", {}).get("text", "").encode(),
            truth["input_tokens"],
        )
        for entry, truth in zip(entries, truths, strict=True)
    ]


def fallback_usage(family: str, request_body: bytes, model: str | None) -> Usage:
    """What to commit when the answer shows no usage: the input estimate, no output, flagged by
    the caller as estimated (``UsageRecord.estimated``)."""
    return Usage(input_tokens=input_tokens_from_bytes(family, request_body), model=model)
