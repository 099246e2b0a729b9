"""Normalised token usage, read from what each provider family returns.

Every function here is pure: parsed JSON (or a raw body) in, :class:`Usage` out. Field meanings
follow ``bbnet.model.UsageRecord`` and the recordings' README:

- ``input_tokens``: all input, cache writes and cache reads included;
- ``cache_write_tokens`` / ``cache_read_tokens``: the cached parts of that input;
- ``output_tokens``: all output, reasoning included; ``reasoning_tokens``: the reasoning part.

Providers report these differently (Anthropic and Bedrock count cached input *outside*
``input_tokens``; OpenAI counts it inside; Gemini reports thinking *outside* the candidates
count), so each reader does its own arithmetic. Garbage in a count (a string, a negative number,
a bool) reads as 0 rather than raising: a malformed answer must not break metering.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bbnet import providers


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def count(value: object) -> int:
    """A token count from JSON: non-negative ints (and integral floats) pass, anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    return 0


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def anthropic(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Anthropic ``usage``: ``input_tokens`` excludes cache creation and cache reads; add them."""
    written = count(usage.get("cache_creation_input_tokens"))
    read = count(usage.get("cache_read_input_tokens"))
    return Usage(
        input_tokens=count(usage.get("input_tokens")) + written + read,
        cache_write_tokens=written,
        cache_read_tokens=read,
        output_tokens=count(usage.get("output_tokens")),
        model=model,
    )


def openai_chat(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Chat Completions ``usage``: ``prompt_tokens`` already includes ``cached_tokens``."""
    return Usage(
        input_tokens=count(usage.get("prompt_tokens")),
        cache_read_tokens=count(_dict(usage.get("prompt_tokens_details")).get("cached_tokens")),
        output_tokens=count(usage.get("completion_tokens")),
        reasoning_tokens=count(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens")),
        model=model,
    )


def openai_responses(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Responses ``usage``: ``input_tokens`` includes cached, ``output_tokens`` includes reasoning."""
    return Usage(
        input_tokens=count(usage.get("input_tokens")),
        cache_read_tokens=count(_dict(usage.get("input_tokens_details")).get("cached_tokens")),
        output_tokens=count(usage.get("output_tokens")),
        reasoning_tokens=count(_dict(usage.get("output_tokens_details")).get("reasoning_tokens")),
        model=model,
    )


def openai_realtime(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Realtime ``response.done`` usage: totals include text and audio (and image) tokens; the
    cached part of the input is ``input_token_details.cached_tokens``."""
    return Usage(
        input_tokens=count(usage.get("input_tokens")),
        cache_read_tokens=count(_dict(usage.get("input_token_details")).get("cached_tokens")),
        output_tokens=count(usage.get("output_tokens")),
        model=model,
    )


def gemini(meta: Mapping[str, Any], model: str | None) -> Usage:
    """Gemini ``usageMetadata``.

    ``promptTokenCount`` includes ``cachedContentTokenCount``; tool-use prompt tokens are billed
    as input but reported apart; ``thoughtsTokenCount`` is billed as output but is *not* part of
    ``candidatesTokenCount``.
    """
    thoughts = count(meta.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount")),
        cache_read_tokens=count(meta.get("cachedContentTokenCount")),
        output_tokens=count(meta.get("candidatesTokenCount")) + thoughts,
        reasoning_tokens=thoughts,
        model=model,
    )


def bedrock_converse(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Bedrock Converse ``usage``: ``inputTokens`` excludes cache reads and writes; add them."""
    read = count(usage.get("cacheReadInputTokens"))
    written = count(usage.get("cacheWriteInputTokens"))
    return Usage(
        input_tokens=count(usage.get("inputTokens")) + read + written,
        cache_write_tokens=written,
        cache_read_tokens=read,
        output_tokens=count(usage.get("outputTokens")),
        model=model,
    )


def bedrock_invocation_metrics(metrics: Mapping[str, Any], model: str | None) -> Usage:
    """``amazon-bedrock-invocationMetrics`` (the last chunk of invoke-with-response-stream)."""
    read = count(metrics.get("cacheReadInputTokenCount"))
    written = count(metrics.get("cacheWriteInputTokenCount"))
    return Usage(
        input_tokens=count(metrics.get("inputTokenCount")) + read + written,
        cache_write_tokens=written,
        cache_read_tokens=read,
        output_tokens=count(metrics.get("outputTokenCount")),
        model=model,
    )


BEDROCK_COUNT_HEADERS = {
    "input": "x-amzn-bedrock-input-token-count",
    "output": "x-amzn-bedrock-output-token-count",
    "cache_read": "x-amzn-bedrock-cache-read-input-token-count",
    "cache_write": "x-amzn-bedrock-cache-write-input-token-count",
}


def _header_count(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def bedrock_headers(headers: Mapping[str, str], model: str | None) -> Usage | None:
    """InvokeModel's token-count headers (any model on Bedrock); None when they are absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    given = {key: _header_count(lowered, name) for key, name in BEDROCK_COUNT_HEADERS.items()}
    if given["input"] is None or given["output"] is None:
        return None
    read = given["cache_read"] or 0
    written = given["cache_write"] or 0
    return Usage(
        input_tokens=given["input"] + read + written,
        cache_write_tokens=written,
        cache_read_tokens=read,
        output_tokens=given["output"],
        model=model,
    )


def openai_embeddings(usage: Mapping[str, Any], model: str | None) -> Usage:
    """Embeddings ``usage``: ``prompt_tokens`` (``total_tokens`` is the same number); no output."""
    return Usage(input_tokens=count(usage.get("prompt_tokens") or usage.get("total_tokens")), model=model)


def bedrock_embed(body: Mapping[str, Any], headers: Mapping[str, str], model: str | None) -> Usage | None:
    """An embedding model's InvokeModel answer: the input-count header (any model; Cohere's only
    count), else Titan's ``inputTextTokenCount``; None when neither is there."""
    lowered = {k.lower(): v for k, v in headers.items()}
    from_header = _header_count(lowered, BEDROCK_COUNT_HEADERS["input"])
    if from_header is not None:
        return Usage(input_tokens=from_header, model=model)
    if "inputTextTokenCount" in body:
        return Usage(input_tokens=count(body.get("inputTextTokenCount")), model=model)
    return None


def _gemini_embed(doc: Mapping[str, Any], model: str | None) -> Usage | None:
    """embedContent / batchEmbedContents: ``usageMetadata`` where the API sends one (Vertex, newer
    Gemini API versions); most Gemini API answers carry none, and then the estimate is committed."""
    meta = doc.get("usageMetadata")
    if not isinstance(meta, dict):
        return None
    return Usage(input_tokens=count(meta.get("promptTokenCount") or meta.get("totalTokenCount")), model=model)


def from_json(
    family: str,
    body: object,
    headers: Mapping[str, str] | None = None,
    model_hint: str | None = None,
) -> Usage | None:
    """Usage from a complete (non-streamed) JSON answer, or None if it carries none.

    ``model_hint`` is the model named by the request path or body; it is used where the answer
    names none (Gemini without ``modelVersion``, Bedrock).
    """
    doc = _dict(body)
    if family == providers.ANTHROPIC_MESSAGES:
        usage = doc.get("usage")
        return anthropic(usage, _str(doc.get("model")) or model_hint) if isinstance(usage, dict) else None
    if family == providers.OPENAI_CHAT:
        usage = doc.get("usage")
        return openai_chat(usage, _str(doc.get("model")) or model_hint) if isinstance(usage, dict) else None
    if family == providers.OPENAI_RESPONSES:
        usage = doc.get("usage")
        if not isinstance(usage, dict):
            return None
        return openai_responses(usage, _str(doc.get("model")) or model_hint)
    if family == providers.GEMINI:
        return _gemini_doc(body, model_hint)
    if family == providers.CODE_ASSIST:  # {"response": <a Gemini answer>}, or a JSON array of them
        items = body if isinstance(body, list) else [body]
        return _gemini_doc([_dict(item).get("response") for item in items], model_hint)
    if family == providers.OPENAI_EMBEDDINGS:
        usage = doc.get("usage")
        return (
            openai_embeddings(usage, _str(doc.get("model")) or model_hint)
            if isinstance(usage, dict)
            else None
        )
    if family == providers.GEMINI_EMBED:
        return _gemini_embed(doc, model_hint)
    if family == providers.BEDROCK_EMBED:
        return bedrock_embed(doc, headers or {}, model_hint)
    if family == providers.BEDROCK_CONVERSE:
        usage = doc.get("usage")
        return bedrock_converse(usage, model_hint) if isinstance(usage, dict) else None
    if family == providers.BEDROCK_INVOKE:
        from_headers = bedrock_headers(headers or {}, _str(doc.get("model")) or model_hint)
        if from_headers is not None:
            return from_headers
        usage = doc.get("usage")
        return anthropic(usage, _str(doc.get("model")) or model_hint) if isinstance(usage, dict) else None
    raise ValueError(f"unknown API family {family!r}")


def _gemini_doc(body: object, model_hint: str | None) -> Usage | None:
    """A generateContent answer, or a non-SSE streamGenerateContent array (the last usage wins)."""
    items = body if isinstance(body, list) else [body]
    found: Usage | None = None
    for item in items:
        doc = _dict(item)
        meta = doc.get("usageMetadata")
        if isinstance(meta, dict):
            found = gemini(meta, _str(doc.get("modelVersion")) or model_hint)
    return found


def from_body(
    family: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    model_hint: str | None = None,
) -> Usage | None:
    """Usage from a raw (already content-decoded) JSON body; None if it is not JSON or has none."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return from_json(family, doc, headers, model_hint)
