"""Wire-level pieces the simulator's families share: the reply value, SSE framing, ids, error shapes.

Everything here is pure. Ids are derived from a per-request seed (48 hex characters the server
draws), so a renderer given the same seed renders the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from typing import Any

from bbnet.providers import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_EMBED,
    BEDROCK_INVOKE,
    CODE_ASSIST,
    FREE,
    GEMINI,
    GEMINI_EMBED,
    OPENAI_CHAT,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
)

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Reply:
    """An HTTP answer. ``chunks`` set means a stream: each chunk is written and flushed on its own,
    with the chunk delay between them; otherwise ``body`` is sent with a Content-Length."""

    status: int
    headers: Headers
    body: bytes = b""
    chunks: tuple[bytes, ...] | None = None


def compact(obj: Any) -> bytes:
    """JSON the way the providers send it: no spaces, non-ASCII kept."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_reply(obj: Any, headers: Headers = (), status: int = 200) -> Reply:
    return Reply(status, (("content-type", JSON_CONTENT_TYPE), *headers), compact(obj))


def sse(data: Any, event: str | None = None, terminator: str = "\n\n") -> bytes:
    """One server-sent event; Gemini terminates events with CRLF CRLF, the others with LF LF."""
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else compact(data).decode()
    return f"{head}data: {payload}{terminator}".encode()


def base62(seed: str, length: int) -> str:
    """``length`` (at most 43) base-62 characters derived from ``seed``; salt the seed to get
    unrelated ids from one request's seed (``"msg" + seed``, ``"req" + seed``)."""
    if length > 43:
        raise ValueError(f"base62 ids are at most 43 characters, asked for {length}")
    value = int.from_bytes(hashlib.sha256(seed.encode()).digest())
    out = []
    for _ in range(length):
        value, digit = divmod(value, 62)
        out.append(_BASE62[digit])
    return "".join(out)


def padding(index: int) -> str:
    """Filler the providers add to stream events so their sizes do not leak the text length."""
    return _BASE62[: 4 + (index * 7) % 13]


def guess_family(path: str, anthropic_client: bool) -> str:
    """The dialect to answer an unroutable request in: by path, else by the client's headers."""
    if path.startswith(("/v1beta/", "/v1alpha/", "/v1internal:")) or "/publishers/google/" in path:
        return GEMINI
    if path.startswith("/model/"):
        return BEDROCK_CONVERSE
    if "/publishers/anthropic/" in path:
        return ANTHROPIC_MESSAGES
    return ANTHROPIC_MESSAGES if anthropic_client else OPENAI_CHAT


_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 500: "api_error"}
_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 500: "INTERNAL"}
_BEDROCK_ERROR_TYPES = {
    400: "ValidationException",
    404: "ResourceNotFoundException",
    500: "InternalServerException",
}


def error_reply(family: str, status: int, message: str, seed: str) -> Reply:
    """An error in the provider's own shape (status 400, 404 or 500)."""
    if family == FREE:
        raise ValueError("free endpoints answer errors in the dialect of their path (guess_family)")
    if family == ANTHROPIC_MESSAGES:
        error_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        request_id = anthropic_request_id(seed)
        body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
        return json_reply(body, (("request-id", request_id),), status)
    if family in (OPENAI_CHAT, OPENAI_RESPONSES, OPENAI_EMBEDDINGS):
        error_type = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": error_type, "param": None, "code": None}}
        return json_reply(body, (("x-request-id", openai_request_id(seed)),), status)
    if family in (GEMINI, GEMINI_EMBED, CODE_ASSIST):
        body = {
            "error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "INTERNAL")}
        }
        return json_reply(body, (), status)
    if family in (BEDROCK_CONVERSE, BEDROCK_INVOKE, BEDROCK_EMBED):
        error_type = _BEDROCK_ERROR_TYPES.get(status, "InternalServerException")
        headers = (("x-amzn-RequestId", aws_request_id(seed)), ("x-amzn-ErrorType", error_type))
        return json_reply({"message": message}, headers, status)
    raise ValueError(f"unknown family {family!r}")


def anthropic_request_id(seed: str) -> str:
    return "req_011C" + base62("req" + seed, 20)


def openai_request_id(seed: str) -> str:
    return "req_" + seed[:32]


def aws_request_id(seed: str) -> str:
    s = seed[:32].ljust(32, "0")
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:32]}"
