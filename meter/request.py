"""Pure request-side functions for the gate: model, streaming, the max-output field and its edits.

Bodies come in as bytes (what mitmproxy holds) and edited bodies go out as compact JSON bytes.
A body that is not a JSON object is refused with a :class:`RequestError` naming what was wrong;
the gate then meters the call on an estimate instead of editing it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson

from bbnet import providers
from meter.decode import DecodeError, decoder_for


class RequestError(ValueError):
    """The request body cannot be read or edited; the message says why, in one line."""


MAX_DECODED_BODY = 64 * 1024 * 1024  # a request body that inflates past this is refused


def decoded_body(raw: bytes, content_encoding: str | None, limit: int = MAX_DECODED_BODY) -> bytes:
    """A request body with its ``Content-Encoding`` undone (Codex sends zstd), for the estimate and
    for edits; raises :class:`RequestError` when it does not decode or inflates past ``limit``."""
    if not content_encoding or not content_encoding.strip():
        return raw
    try:
        decoder = decoder_for(content_encoding)
        out = bytearray()
        for piece in decoder.decode(raw):
            out += piece
            if len(out) > limit:
                raise RequestError(f"request body inflates past {limit} bytes ({content_encoding})")
        if not decoder.finished():
            raise DecodeError("the data ends mid-stream")
    except DecodeError as exc:
        raise RequestError(f"request body does not decode as {content_encoding.strip()}: {exc}") from None
    return bytes(out)


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (orjson: a few times faster than the standard library on
    agent bodies of 50 kB-1 MB; stricter too: UTF-8 only, integers within 64 bits)."""
    try:
        doc = orjson.loads(body)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(f"request body is a JSON {type(doc).__name__}, not an object")
    return doc


def _dump(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)  # compact, UTF-8


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


# Where each family names its output cap. Dotted paths are nested objects. OpenAI chat has two:
# ``max_completion_tokens`` (current; the only one reasoning models accept) and the older
# ``max_tokens`` (what most OpenAI-compatible hosts still read).
_FIELDS: dict[str, tuple[str, ...]] = {
    providers.ANTHROPIC_MESSAGES: ("max_tokens",),
    providers.OPENAI_CHAT: ("max_completion_tokens", "max_tokens"),
    providers.OPENAI_RESPONSES: ("max_output_tokens",),
    providers.GEMINI: ("generationConfig.maxOutputTokens",),
    providers.BEDROCK_CONVERSE: ("inferenceConfig.maxTokens",),
    providers.BEDROCK_INVOKE: ("max_tokens",),  # the Anthropic-on-Bedrock body
    providers.CODE_ASSIST: ("request.generationConfig.maxOutputTokens",),
    # embeddings produce no output tokens: nothing to cap
    providers.OPENAI_EMBEDDINGS: (),
    providers.GEMINI_EMBED: (),
    providers.BEDROCK_EMBED: (),
}


def has_output_cap(family: str) -> bool:
    """Whether requests of ``family`` have an output cap (embeddings have none)."""
    return bool(_fields(family))


def _fields(family: str) -> tuple[str, ...]:
    try:
        return _FIELDS[family]
    except KeyError:
        raise RequestError(f"unknown API family {family!r}") from None


def _get(doc: dict[str, Any], dotted: str) -> object:
    node: object = doc
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(doc: dict[str, Any], dotted: str, value: int) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def max_output_field(
    family: str, body: dict[str, Any], provider: str | None = None
) -> tuple[str, int | None]:
    """The field that caps output in this request and its value (None when the request sets none).

    For OpenAI chat the field already present wins; when neither is present it is
    ``max_completion_tokens`` on OpenAI itself and ``max_tokens`` on OpenAI-compatible hosts.
    """
    fields = _fields(family)
    if not fields:
        raise RequestError(f"{family} requests have no output cap")
    for field in fields:
        value = _positive_int(_get(body, field))
        if value is not None:
            return field, value
    if family == providers.OPENAI_CHAT and provider not in _MAX_COMPLETION_PROVIDERS:
        return "max_tokens", None
    return fields[0], None


# Hosts that run OpenAI's own models read ``max_completion_tokens`` (reasoning models refuse
# ``max_tokens``); the other OpenAI-compatible hosts read ``max_tokens``.
_MAX_COMPLETION_PROVIDERS = (None, "openai", "azure")


def apply_cap(family: str, body: bytes, cap: int, provider: str | None = None) -> bytes:
    """DEGRADE: the body with its output cap lowered to ``cap`` (set if absent, never raised)."""
    if cap < 1:
        raise RequestError(f"output cap must be at least 1, got {cap}")
    if not has_output_cap(family):
        return body
    doc = parse_body(body)
    present = [f for f in _fields(family) if _positive_int(_get(doc, f)) is not None]
    if not present:
        field, _ = max_output_field(family, doc, provider)
        present = [field]
    for field in present:
        current = _positive_int(_get(doc, field))
        if current is None or current > cap:
            _set(doc, field, cap)
    return _dump(doc)


def ensure_stream_usage(body: bytes, read: dict[str, Any] | None = None) -> tuple[bytes, bool]:
    """An OpenAI chat stream request with ``stream_options.include_usage`` set.

    Returns the body to forward and whether the option was injected (then the tap must strip the
    usage-only chunk the client did not ask for). Non-streaming requests, and streams that already
    ask for usage, come back unchanged. ``read``: the body's top-level members, already read (the
    gate's plan did), so that a body left unchanged is not parsed again.
    """
    doc = parse_body(body) if read is None else read
    if doc.get("stream") is not True:
        return body, False
    options = doc.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return body, False
    if read is not None:
        doc = parse_body(body)  # edited: the whole body, not only the members read
        options = doc.get("stream_options")
    doc["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return _dump(doc), True


def is_stream(family: str, path: str, body: dict[str, Any]) -> bool:
    """Whether the request asks for a streamed answer (Gemini and Bedrock say so in the path)."""
    route = path.split("?", 1)[0]
    if family in (providers.GEMINI, providers.CODE_ASSIST):
        return ":streamGenerateContent" in route
    if family in providers.EMBEDDING_FAMILIES:
        return False
    if family == providers.BEDROCK_CONVERSE:
        return route.endswith("/converse-stream")
    if family == providers.BEDROCK_INVOKE:
        return route.endswith("/invoke-with-response-stream")
    _fields(family)
    return body.get("stream") is True


def model_of(family: str, body: dict[str, Any], model_from_path: str | None = None) -> str | None:
    """The model the request names: in the path for Gemini, Vertex and Bedrock, else the body's
    ``model`` (for Azure, where that is a deployment name, the answer's model wins at commit)."""
    if model_from_path:
        return unquote(model_from_path)
    model = body.get("model")
    return model if isinstance(model, str) and model else None


# Output caps by model prefix (longest prefix wins), from the providers' model pages. Used only
# when the request sets no cap, to size the reservation; the lease is released at commit.
OUTPUT_CAPS: dict[str, int] = {
    "claude-opus-4-5": 64_000,
    "claude-opus-4": 32_000,
    "claude-sonnet-4": 64_000,
    "claude-haiku-4": 64_000,
    "claude-3-7-sonnet": 64_000,
    "claude-3-5": 8_192,
    "claude-3": 4_096,
    "gpt-realtime": 4_096,
    "gpt-4o-realtime": 4_096,
    "gpt-4o-mini-realtime": 4_096,
    "gpt-5": 128_000,
    "gpt-4.1": 32_768,
    "gpt-4o": 16_384,
    "gpt-4-turbo": 4_096,
    "gpt-4": 8_192,
    "gpt-3.5": 4_096,
    "o1": 100_000,
    "o3": 100_000,
    "o4": 100_000,
    "gemini-2.5": 65_536,
    "gemini-2.0": 8_192,
    "gemini-1.5": 8_192,
}
DEFAULT_OUTPUT_CAP = 8_192  # an unknown model: about what most models allow by default

# Bedrock ids carry a region group and a vendor: "us.anthropic.claude-sonnet-4-...-v1:0".
_BEDROCK_PREFIXES = ("us.", "eu.", "apac.", "global.", "jp.", "au.")
_VENDORS = ("anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.", "deepseek.", "openai.")


def output_cap(model: str | None) -> int:
    """The most output tokens ``model`` may produce, for requests that set no cap."""
    if not model:
        return DEFAULT_OUTPUT_CAP
    name = model.lower().rsplit("/", 1)[-1].removeprefix("models/")
    for prefix in _BEDROCK_PREFIXES:
        name = name.removeprefix(prefix)
    for vendor in _VENDORS:
        name = name.removeprefix(vendor)
    best = max((p for p in OUTPUT_CAPS if name.startswith(p)), key=len, default=None)
    return OUTPUT_CAPS[best] if best else DEFAULT_OUTPUT_CAP


def requested_output(
    family: str, body: dict[str, Any], model: str | None, provider: str | None = None
) -> int:
    """Output tokens to reserve: the request's own cap, else the model's (none for embeddings)."""
    if not has_output_cap(family):
        return 0
    _, value = max_output_field(family, body, provider)
    return value if value is not None else output_cap(model)
