"""The simulator's WebSocket APIs: the Responses API's WebSocket mode and the Realtime API.

An upgrade (``GET`` with ``Upgrade: websocket``) to a path of :data:`bbnet.providers.SOCKETS` is
taken over from the HTTP handler: wsproto does the handshake and the framing over the handler's
own socket. Responses mode answers each ``response.create`` with the events its SSE stream sends
(:func:`meter.sim_openai.response_events`, one text message each, the latency before the first and
the chunk delay between them; a replaying simulator still generates these; a warm-up,
``"generate": false``, makes a response with no output and zero usage);
the Realtime API answers with :mod:`meter.sim_realtime`'s events, ending in ``response.done``.
Every ``response.create`` counts in the simulator's statistics like an HTTP request.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from bbnet.providers import OPENAI_REALTIME, OPENAI_RESPONSES, SOCKETS
from meter import sim_openai, sim_realtime
from meter.sim_plan import SimRequestError, plan_request
from meter.sim_route import Answer, SimConfig
from meter.sim_wire import Reply, compact

Send = Callable[[dict[str, Any]], None]


class Connection(Protocol):
    def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...


def socket_family(path: str) -> str | None:
    """The WebSocket API served at ``path`` (no query), whatever host the client named."""
    return next((r.family for r in SOCKETS if r.path.fullmatch(path)), None)


def _error(family: str, message: str, client_event_id: str | None) -> dict[str, Any]:
    error = {"type": "invalid_request_error", "code": None, "message": message, "param": None}
    if family == OPENAI_REALTIME:
        return {"type": "error", "event_id": "event_" + secrets.token_hex(8),
                "error": {**error, "event_id": client_event_id}}  # fmt: skip
    return {"type": "error", "status": 400, "error": error}


class Session:
    """One socket's answers; ``record`` counts each response.create in the simulator's stats."""

    def __init__(self, family: str, path: str, model: str | None, config: SimConfig,
                 record: Callable[[str, Answer], None]) -> None:  # fmt: skip
        self.family, self.path, self.config, self.record = family, path, config, record
        self.conversation = sim_realtime.Conversation(model or "gpt-realtime")

    def opening(self) -> Iterator[dict[str, Any]]:
        if self.family == OPENAI_REALTIME:
            yield sim_realtime.session_created(self.conversation, secrets.token_hex(24))

    def answer(self, text: str) -> Iterator[dict[str, Any]]:
        """The events answering one client message."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            yield _error(self.family, f"invalid JSON: {exc}", None)
            return
        if not isinstance(doc, dict):
            yield _error(self.family, "a client event must be a JSON object", None)
            return
        event_id = doc.get("event_id") if isinstance(doc.get("event_id"), str) else None
        kind = doc.get("type")
        if (
            self.family == OPENAI_REALTIME
            and kind == "input_audio_buffer.commit"
            and self.conversation.server_vad
        ):
            yield {"type": "input_audio_buffer.committed", "event_id": "event_" + secrets.token_hex(8)}
            doc = {"type": "response.create"}  # the server starts the response on its own
        elif kind != "response.create":
            if self.family == OPENAI_REALTIME:
                self.conversation = sim_realtime.observe(self.conversation, doc)
                return
            yield _error(self.family, f"unsupported event type {doc.get('type')!r}", event_id)
            return
        seed = secrets.token_hex(24)
        try:
            events = self._respond(doc, seed)
        except SimRequestError as exc:
            self.record(self.path, Answer(Reply(400, ()), self.family, None))
            yield _error(self.family, str(exc), event_id)
            return
        yield from events

    def _respond(self, doc: dict[str, Any], seed: str) -> list[dict[str, Any]]:
        if self.family == OPENAI_REALTIME:
            turn = sim_realtime.respond(self.conversation, doc, self.config.output_tokens)
            self.conversation = turn.conversation
            events = sim_realtime.response_events(turn, seed)
            plan = turn.plan
        else:
            body = {k: v for k, v in doc.items() if k not in ("type", "stream_id")}
            plan = plan_request(OPENAI_RESPONSES, self.path, body, None, self.config.output_tokens)
            if doc.get("generate") is False:  # a warm-up (Codex's prewarm): no output, and unbilled here
                plan = replace(plan, input_tokens=0, output_tokens=0, truncated=False)
            lane = {"stream_id": doc["stream_id"]} if isinstance(doc.get("stream_id"), str) else {}
            events = [{**e, **lane} for e in sim_openai.response_events(plan, seed, int(time.time()))]
        self.record(self.path, Answer(Reply(200, (), chunks=()), self.family, plan))
        return events


def serve(conn: Connection, handshake: bytes, session: Session) -> None:
    """Speak WebSocket on ``conn`` (whose HTTP ``handshake`` was already read) until it closes."""
    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(handshake)
    if not any(isinstance(e, Request) for e in ws.events()):
        conn.write(ws.send(RejectConnection(status_code=400)))
        return
    conn.write(ws.send(AcceptConnection()))

    def send(event: dict[str, Any]) -> None:
        conn.write(ws.send(TextMessage(compact(event).decode())))

    for opening in session.opening():
        send(opening)
    pending: list[str] = []
    while True:
        data = conn.read()
        ws.receive_data(data or None)
        for event in ws.events():
            if not _handle(ws, conn, event, pending, session, send):
                return
        if not data:
            return


def _handle(ws: WSConnection, conn: Connection, event: Event, pending: list[str], session: Session,
            send: Send) -> bool:  # fmt: skip
    """Act on one wsproto event; False when the socket is done."""
    if isinstance(event, TextMessage):
        pending.append(event.data)
        if event.message_finished:
            text = "".join(pending)
            pending.clear()
            config = session.config
            for index, answer in enumerate(session.answer(text)):
                delay = config.chunk_delay_ms if index else config.latency_ms
                if delay:
                    time.sleep(delay / 1000)
                send(answer)
    elif isinstance(event, Ping):
        conn.write(ws.send(event.response()))
    elif isinstance(event, CloseConnection):
        if ws.state is ConnectionState.REMOTE_CLOSING:
            conn.write(ws.send(event.response()))
        return False
    return True  # binary frames (audio) make no answer
