"""Pure: metering the LLM APIs that speak over a WebSocket.

Two APIs, both found from the upgrade's original host and path (:func:`bbnet.providers.classify_socket`):

- the Responses API's **WebSocket mode** (``GET /v1/responses`` upgraded; Codex CLI's default
  transport): each client ``response.create`` carries the same fields as ``POST /v1/responses``
  and is answered by the same events the SSE stream sends, ending in ``response.completed``,
  ``response.incomplete`` or ``response.failed`` with ``usage``. Responses on one ``stream_id``
  lane run one after another; lanes may overlap.
- the **Realtime API** (``/v1/realtime``): the conversation lives on the server and grows with the
  client's ``conversation.item.create`` and ``input_audio_buffer.append`` events; each
  ``response.create`` bills the whole conversation again as input and ends in ``response.done``
  with text and audio token counts.

:func:`read_client` turns one client message into a :class:`Create` (reserve before forwarding),
a :class:`Forward` (no response is made: pass it on) or a :class:`Refuse` (not forwarded: the
client gets an error event); :func:`read_server` picks the few server events that matter out of
the stream, cheaply (the ``type`` is sniffed before any JSON is parsed). :class:`Session` holds
what earlier messages told the meter that later estimates depend on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bbnet import providers
from bbnet.providers import OPENAI_REALTIME, OPENAI_RESPONSES, Match
from meter import estimate, gate, request
from meter.usage import Usage, openai_realtime, openai_responses

#: Realtime input audio is pcm16 mono at 24 kHz (48 000 bytes a second); the API bills user audio
#: at about one token per 100 ms, so 4 800 bytes a token. An estimate: the commit uses real usage.
AUDIO_BYTES_PER_TOKEN = 4_800
CHAIN_LENGTH = 8  # recent responses remembered for ``previous_response_id``


@dataclass(frozen=True)
class Endpoint:
    match: Match
    host: str
    path: str  # without the query
    model: str | None  # the query's ``model`` (OpenAI) or ``deployment`` (Azure)


def endpoint(host: str, path: str) -> Endpoint | None:
    """The metered WebSocket API an upgrade to ``host`` + ``path`` (query included) opens, if any."""
    match = providers.classify_socket(host, path)
    if match is None:
        return None
    query = parse_qs(urlsplit(path).query)
    model = (query.get("model") or query.get("deployment") or [""])[0]
    return Endpoint(match, host, path.split("?", 1)[0], model or None)


def is_metered_ws(host: str, path: str) -> bool:
    """Whether the meter understands a WebSocket to ``host`` + ``path`` (the egress policy's test:
    any other WebSocket to an LLM host passes unmetered)."""
    return providers.classify_socket(host, path) is not None


@dataclass(frozen=True)
class Session:
    """What one socket's earlier messages told the meter."""

    model: str | None
    context_tokens: int = 0  # Realtime: conversation items and output so far (billed again each turn)
    audio_bytes: int = 0  # Realtime: input audio appended so far
    instructions_tokens: int = 0  # Realtime: the session's instructions
    max_output_tokens: int | None = None  # Realtime: the session's output cap
    chain: tuple[tuple[str, int], ...] = ()  # Responses: recent response ids and their total tokens

    @property
    def realtime_input(self) -> int:
        return self.context_tokens + self.instructions_tokens + self.audio_bytes // AUDIO_BYTES_PER_TOKEN


# -- client messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    """A ``response.create``: reserve ``plan`` before it is forwarded."""

    plan: gate.Plan
    doc: dict[str, Any]
    lane: str | None  # Responses ``stream_id``: its events echo it
    event_id: str | None  # Realtime client ``event_id``: an error event names it


@dataclass(frozen=True)
class Forward:
    """A client event that makes no response (or a binary frame): forwarded as it is."""

    kind: str


@dataclass(frozen=True)
class Refuse:
    """Not forwarded; ``reason`` says why, in one line."""

    reason: str
    event_id: str | None = None


ClientReading = Create | Forward | Refuse


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cap(value: object) -> int | None:
    """A positive output cap; ``"inf"``, absent or garbage mean none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_client(
    ep: Endpoint, session: Session, content: bytes, is_text: bool
) -> tuple[ClientReading, Session]:
    """What one client message is, and the session after it."""
    if not is_text:
        return Forward("binary"), session
    try:
        doc = json.loads(content)
    except ValueError as exc:  # UnicodeDecodeError included
        return Refuse(f"message is not valid JSON: {exc}"), session
    if not isinstance(doc, dict):
        return Refuse(f"message is a JSON {type(doc).__name__}, not an object"), session
    kind = _str(doc.get("type"))
    event_id = _str(doc.get("event_id"))
    if kind is None:
        return Refuse('message has no "type"', event_id), session
    if kind != "response.create":
        realtime = ep.match.family == OPENAI_REALTIME
        return Forward(kind), (_observe_client(session, kind, doc) if realtime else session)
    if ep.match.family == OPENAI_RESPONSES:
        return _responses_create(ep, session, doc), session
    return _realtime_create(ep, session, doc, event_id), session


def _responses_create(ep: Endpoint, session: Session, doc: dict[str, Any]) -> ClientReading:
    if "model" in doc and _str(doc["model"]) is None:
        return Refuse("response.create: model must be a non-empty string")
    plan = gate.plan_doc(ep.match, ep.path, doc)
    if plan.model is None and ep.model is not None:
        plan = replace(plan, model=ep.model, max_output_tokens=request.requested_output(
            OPENAI_RESPONSES, doc, ep.model, ep.match.provider))  # fmt: skip
    previous = _str(doc.get("previous_response_id"))
    carried = next((tokens for rid, tokens in session.chain if rid == previous), 0)
    plan = replace(plan, input_tokens=plan.input_tokens + carried, stream=True)
    if doc.get("generate") is False:  # a warm-up (Codex's prewarm): the input only, no output
        plan = replace(plan, max_output_tokens=0, cappable=False)
    return Create(plan, doc, _str(doc.get("stream_id")), None)


def _realtime_create(
    ep: Endpoint, session: Session, doc: dict[str, Any], event_id: str | None
) -> ClientReading:
    if "response" in doc and not isinstance(doc["response"], dict):
        return Refuse("response.create: response must be an object", event_id)
    plan = realtime_plan(ep, session, _dict(doc.get("response")))
    return Create(plan, doc, None, event_id)


def realtime_plan(ep: Endpoint, session: Session, params: dict[str, Any]) -> gate.Plan:
    """A Realtime response's reservation: the conversation so far (unless the response is out of
    band) plus its own input, and its cap, else the session's, else the model's. Also what the
    server's own responses (voice activity detection starts them, no ``response.create``) reserve,
    with no ``params``."""
    model = session.model or ep.model
    own = estimate.input_tokens(OPENAI_RESPONSES, params)
    context = 0 if params.get("conversation") == "none" else session.realtime_input
    cap = _cap(params.get("max_output_tokens")) or session.max_output_tokens or request.output_cap(model)
    return gate.Plan(
        ep.match.provider, OPENAI_REALTIME, model, own + context, cap, stream=True, readable=True
    )


def _observe_client(session: Session, kind: str, doc: dict[str, Any]) -> Session:
    """A Realtime client event's effect on what later responses will be billed."""
    if kind == "session.update":
        params = _dict(doc.get("session"))
        cap = params.get("max_output_tokens", params.get("max_response_output_tokens"))
        instructions = params.get("instructions")
        return replace(
            session,
            model=_str(params.get("model")) or session.model,
            max_output_tokens=_cap(cap) if "max_output_tokens" in params or "max_response_output_tokens" in params
            else session.max_output_tokens,
            instructions_tokens=estimate.input_tokens(OPENAI_RESPONSES, {"instructions": instructions})
            if isinstance(instructions, str) else session.instructions_tokens,
        )  # fmt: skip
    if kind == "conversation.item.create":
        item = _dict(doc.get("item"))
        return replace(session, context_tokens=session.context_tokens
                       + estimate.input_tokens(OPENAI_RESPONSES, {"input": [item]}))  # fmt: skip
    if kind == "input_audio_buffer.append":
        audio = doc.get("audio")
        added = len(audio) * 3 // 4 if isinstance(audio, str) else 0  # base64 → bytes
        return replace(session, audio_bytes=session.audio_bytes + added)
    return session


def degrade(reading: Create, cap: int) -> bytes:
    """The ``response.create`` to forward with its output cap lowered to ``cap`` (never raised)."""
    if reading.plan.family == OPENAI_RESPONSES:
        return request.apply_cap(OPENAI_RESPONSES, json.dumps(reading.doc).encode(), cap)
    params = _dict(reading.doc.get("response"))
    current = _cap(params.get("max_output_tokens"))
    doc = {**reading.doc, "response": {**params, "max_output_tokens": min(cap, current or cap)}}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# -- server events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    lane: str | None


@dataclass(frozen=True)
class Finished:
    """A response's last event: ``usage`` None when it carried none; ``failed`` when it failed."""

    lane: str | None
    usage: Usage | None
    failed: bool
    response_id: str | None = None


@dataclass(frozen=True)
class ServerError:
    """An ``error`` event: for the Realtime API, ``client_event_id`` names the event it refuses."""

    lane: str | None
    client_event_id: str | None


@dataclass(frozen=True)
class SessionInfo:
    model: str | None


ServerReading = Started | Finished | ServerError | SessionInfo | None

# ``type`` first, or second after ``event_id`` (as the Realtime API writes its events)
_TYPE_FIRST = re.compile(
    rb'\A\s*\{\s*(?:"event_id"\s*:\s*"[^"\\]{0,64}"\s*,\s*)?"type"\s*:\s*"([^"\\]{1,64})"'
)
_RESPONSES_END = {"response.completed": False, "response.incomplete": False, "response.failed": True}
_WANTED = frozenset({"response.created", "response.done", "error", "session.created", "session.updated",
                     *_RESPONSES_END})  # fmt: skip


def read_server(family: str, content: bytes, is_text: bool, model_hint: str | None) -> ServerReading:
    """The server event in ``content`` if it is one the meter acts on, else None."""
    if not is_text:
        return None
    sniffed = _TYPE_FIRST.match(content)
    if sniffed is not None and sniffed.group(1).decode() not in _WANTED:
        return None  # a delta: most of the stream, skipped without parsing
    try:
        doc = json.loads(content)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    kind = doc.get("type")
    lane = _str(doc.get("stream_id"))
    response = _dict(doc.get("response"))
    model = _str(response.get("model")) or model_hint
    if kind == "response.created":
        return Started(lane)
    if kind == "error":
        return ServerError(lane, _str(_dict(doc.get("error")).get("event_id")))
    if kind in ("session.created", "session.updated"):
        return SessionInfo(_str(_dict(doc.get("session")).get("model")))
    usage = response.get("usage")
    if family == OPENAI_RESPONSES and kind in _RESPONSES_END:
        found = openai_responses(usage, model) if isinstance(usage, dict) else None
        return Finished(lane, found, _RESPONSES_END[kind], _str(response.get("id")))
    if family == OPENAI_REALTIME and kind == "response.done":
        found = openai_realtime(usage, model) if isinstance(usage, dict) else None
        return Finished(lane, found, response.get("status") in ("failed", "cancelled"))
    return None


def observe_server(session: Session, family: str, reading: ServerReading) -> Session:
    """The session after a server event: the model it names; a finished response's size."""
    if isinstance(reading, SessionInfo):
        return replace(session, model=reading.model or session.model)
    if not isinstance(reading, Finished) or reading.usage is None:
        return session
    if family == OPENAI_REALTIME:  # the answer joins the conversation
        return replace(session, context_tokens=session.context_tokens + reading.usage.output_tokens)
    if reading.response_id is None:
        return session
    chain = ((reading.response_id, reading.usage.tokens), *session.chain)[:CHAIN_LENGTH]
    return replace(session, chain=chain)
