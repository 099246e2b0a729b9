"""Pure: the gate's own answers in each provider's error shape, and credential redaction.

A DENY (429) or a fail-closed ledger error (503) is answered by the proxy itself, in the shape the
client's SDK already parses, so the agent sees an ordinary rate-limit or server error with a
readable message. Every body also carries ``bbnet_code`` and, for DENY, the governing pool and
``bbnet_reason``: ``exhausted`` when real usage has spent the pool, ``call_exceeds_remaining`` when
room is left but this call's estimate (input + the least output it accepts, ``needed``) does not
fit in what remains (``remaining``) — a smaller call may still pass.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bbnet import providers
from bbnet.model import PoolView
from bbnet.pools import period_end

BUDGET_DENIED = "BUDGET_DENIED"
BUDGET_CONFIG = "BUDGET_CONFIG"
BAD_MESSAGE = "BAD_MESSAGE"  # a WebSocket message the meter refused to forward
BAD_CONTENT_ENCODING = "BAD_CONTENT_ENCODING"  # a request body that does not decode: refused, not forwarded
UNMETERED = "UNMETERED"  # a call on an LLM host the meter cannot meter: refused (egress policy)
EGRESS_DENIED = "EGRESS_DENIED"
_STATUS = {BUDGET_DENIED: 429, BUDGET_CONFIG: 503, BAD_CONTENT_ENCODING: 400, UNMETERED: 403}
REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class GateError:
    status: int
    headers: dict[str, str]
    body: bytes


EXHAUSTED = "exhausted"
CALL_EXCEEDS_REMAINING = "call_exceeds_remaining"


def _remaining(pool: PoolView) -> int:
    return max(0, pool.limit - pool.used - pool.reserved)


def _reason(pool: PoolView, needed: int) -> str:
    return CALL_EXCEEDS_REMAINING if needed > 0 and not pool.exhausted else EXHAUSTED


def _message(code: str, governing: PoolView | None, detail: str, needed: int = 0) -> str:
    if code == BUDGET_DENIED and governing is not None:
        pool = f"{governing.scope} ({governing.provider}, {governing.unit})"
        counters = f"used {governing.used} + reserved {governing.reserved} of limit {governing.limit}"
        if _reason(governing, needed) == CALL_EXCEEDS_REMAINING:
            unit = "micro-USD" if governing.unit == "usd" else "tokens"
            head = (
                f"bbnet: this call needs ~{needed:,} {unit}, {_remaining(governing):,} remain in {pool}: "
                f"{counters} (not exhausted: a smaller call may fit)"
            )
        else:
            head = f"bbnet: budget exhausted for {pool}: {counters}"
        return head + (f"; {detail}" if detail else "")
    return f"bbnet: {detail}" if detail else f"bbnet: {code}"


def _bbnet_fields(code: str, governing: PoolView | None, needed: int = 0) -> dict[str, object]:
    fields: dict[str, object] = {"bbnet_code": code}
    if governing is not None:
        fields.update(
            scope=governing.scope,
            provider=governing.provider,
            unit=governing.unit,
            limit=governing.limit,
            used=governing.used,
            reserved=governing.reserved,
        )
        if code == BUDGET_DENIED:
            fields.update(bbnet_reason=_reason(governing, needed), remaining=_remaining(governing))
            if needed > 0:
                fields["needed"] = needed
    return fields


def retry_after(governing: PoolView | None, now: float) -> int | None:
    """Seconds until the governing pool's period ends, when waiting can help: never for a
    ``total`` pool, nor for a bottle refused for its state (no governing pool)."""
    if governing is None or governing.period == "total":
        return None
    return max(1, math.ceil(period_end(governing.period, governing.period_start) - now))


def gate_error(
    family: str,
    code: str,
    governing: PoolView | None = None,
    detail: str = "",
    retry_after: int | None = None,
    needed: int = 0,
) -> GateError:
    """The proxy's answer: 429 for ``BUDGET_DENIED``, 503 for ``BUDGET_CONFIG``, 400 for
    ``BAD_CONTENT_ENCODING``, 403 for ``UNMETERED``. ``needed``: a DENY's least amount the call
    needed (0: unknown).

    A DENY tells SDKs not to retry (``x-should-retry: false``, honoured by the official SDKs and
    Claude Code): the same call would be refused again until budget frees up. ``retry_after``
    (see :func:`retry_after`) adds ``retry-after`` where the period's reset will free it.
    """
    if code not in _STATUS:
        raise ValueError(f"unknown bbnet error code {code!r}")
    status = _STATUS[code]
    message = redact(_message(code, governing, detail, needed))
    extra = _bbnet_fields(code, governing, needed)
    headers = {"content-type": "application/json", "x-bbnet-code": code}
    if code != BUDGET_CONFIG:  # a refusal stays one until budget or policy change: no retry
        headers["x-should-retry"] = "false"
    if code == BUDGET_DENIED and retry_after is not None:
        headers["retry-after"] = str(retry_after)
    body: dict[str, object]
    if family == providers.ANTHROPIC_MESSAGES:
        kind = {429: "rate_limit_error", 400: "invalid_request_error", 403: "permission_error"}.get(
            status, "api_error"
        )
        body = {"type": "error", "error": {"type": kind, "message": message}, **extra}
    elif family in (providers.OPENAI_CHAT, providers.OPENAI_RESPONSES, providers.OPENAI_EMBEDDINGS):
        kind = {429: "rate_limit_exceeded", 400: "invalid_request_error", 403: "permission_denied"}.get(
            status, "server_error"
        )
        body = {"error": {"message": message, "type": kind, "code": code.lower()}, **extra}
    elif family in (providers.GEMINI, providers.GEMINI_EMBED, providers.CODE_ASSIST):
        state = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}.get(
            status, "UNAVAILABLE"
        )
        body = {"error": {"code": status, "message": message, "status": state}, **extra}
    elif family in (providers.BEDROCK_CONVERSE, providers.BEDROCK_INVOKE, providers.BEDROCK_EMBED):
        headers["x-amzn-ErrorType"] = {
            429: "ThrottlingException",
            400: "ValidationException",
            403: "AccessDeniedException",
        }.get(status, "ServiceUnavailableException")
        body = {"message": message, **extra}
    else:
        raise ValueError(f"unknown API family {family!r}")
    return GateError(status, headers, json.dumps(body).encode())


def egress_denied(host: str, bottle: str | None) -> GateError:
    """The answer to a request the egress policy does not allow (a host no rule names)."""
    who = f"bottle {bottle}" if bottle else "this source"
    message = f"bbnet: egress to {host} is not allowed for {who} (egress policy)"
    body = {"error": {"type": "egress_denied", "message": message}, "bbnet_code": EGRESS_DENIED, "host": host}
    headers = {"content-type": "application/json", "x-bbnet-code": EGRESS_DENIED, "x-should-retry": "false"}
    return GateError(403, headers, json.dumps(body).encode())


_SOCKET_ERRORS = {
    BUDGET_DENIED: (429, "rate_limit_exceeded"),
    BUDGET_CONFIG: (503, "server_error"),
    BAD_MESSAGE: (400, "invalid_request_error"),
}


def socket_error(
    family: str,
    code: str,
    governing: PoolView | None = None,
    detail: str = "",
    client_event_id: str | None = None,
    needed: int = 0,
) -> bytes:
    """The proxy's answer to a WebSocket message it did not forward: the API's own ``error`` event
    (the Responses WebSocket mode's ``{"type": "error", "status", "error"}``, or the Realtime API's,
    which names the client event it refuses), plus ``bbnet_code`` and the governing pool."""
    if code not in _SOCKET_ERRORS:
        raise ValueError(f"unknown bbnet error code {code!r}")
    status, kind = _SOCKET_ERRORS[code]
    error: dict[str, object] = {
        "type": kind,
        "code": code.lower(),
        "message": redact(_message(code, governing, detail, needed)),
        "param": None,
    }
    if family == providers.OPENAI_REALTIME:
        body: dict[str, object] = {"type": "error", "event_id": f"event_bbnet_{code.lower()}",
                                   "error": {**error, "event_id": client_event_id}}  # fmt: skip
    elif family == providers.OPENAI_RESPONSES:
        body = {"type": "error", "status": status, "error": error}
    else:
        raise ValueError(f"no WebSocket API of family {family!r}")
    return json.dumps({**body, **_bbnet_fields(code, governing, needed)}).encode()


# --- redaction --------------------------------------------------------------------------------

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "x-amz-security-token",
        "x-amz-signature",
        "x-amz-credential",
        "cookie",
        "set-cookie",
    }
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # header lines in free text: "authorization: Bearer sk-..." / "x-api-key=..."
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|x-goog-api-key|api-key|x-amz-security-token)"
            r"(\"?\s*[:=]\s*\"?)([^\"\r\n,}]+)"
        ),
        rf"\1\2{REDACTED}",
    ),
    # AWS SigV4 query parameters (presigned URLs)
    (re.compile(r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token))=([^&\s\"']+)"), rf"\1={REDACTED}"),
    # SigV4 Authorization header parts, wherever they appear
    (re.compile(r"(?i)\b(Signature|Credential)=([0-9A-Za-z/+=_.-]+)"), rf"\1={REDACTED}"),
    # URL userinfo: scheme://user:pass@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@"), rf"\1{REDACTED}@"),
    # API key query parameters (Gemini's ?key=...)
    (re.compile(r"(?i)([?&](?:key|api_key|apikey|access_token)=)([^&\s\"']+)"), rf"\1{REDACTED}"),
    # bare bearer tokens and well-known key shapes
    (re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"), f"Bearer {REDACTED}"),
    (re.compile(r"\b(?:sk-(?:ant-)?[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,})"), REDACTED),
)


def redact(text: str) -> str:
    """``text`` with credentials removed: auth headers, API keys, SigV4 signatures, URL userinfo."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Header pairs fit for a log: secret headers' values replaced, the rest redacted as text."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, REDACTED if name.lower() in SECRET_HEADERS else redact(value)) for name, value in pairs]
