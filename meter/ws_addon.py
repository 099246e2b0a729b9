"""The meter's WebSocket shell: the upgrade is attributed like any request, then every client
``response.create`` is reserved before it is forwarded and every finished response committed.

:class:`SocketMeter` is driven by :class:`meter.addon.Meter` (its ``request`` hook hands over
upgrades, its ``websocket_*`` hooks delegate here) and writes the ledger through the Meter's own
commit and release, so a socket's responses end like HTTP calls: each reserved response as one
usage row or one release. Refused messages are dropped and answered with the API's own error event
(injected toward the client); a bottle that is no longer open has its socket closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mitmproxy import ctx, http, websocket
from mitmproxy.proxy import events

from bbnet import metrics, providers
from bbnet.ledger import LedgerError
from bbnet.model import Outcome, PoolView, ReserveResult
from bbnet.names import AGENT_NAME_RE
from bbnet.prices import rates
from meter import errors, gate, ws
from meter.stake import Held

if TYPE_CHECKING:
    from meter.addon import Call, Meter

log = logging.getLogger("bbnet.meter")
SOCKET = "bbnet-socket"
#: The status a WebSocket response's usage row carries: 200, as the same response streamed over
#: HTTP would (a failed response is a ``response.failed`` event in a 200 stream there too)
RESPONSE_STATUS = 200


@dataclass
class Pending:
    """A forwarded ``response.create`` waiting for its last event."""

    call: Call
    lane: str | None
    event_id: str | None
    started: bool = False
    over_budget: bool = False  # a response the server started on its own that the budget could not pay


@dataclass
class Socket:
    """One metered WebSocket's state, kept in ``flow.metadata``."""

    endpoint: ws.Endpoint
    bottle: str
    agent: str
    session: ws.Session
    created: int = 0  # response.create messages seen: the idempotency keys' sequence
    pending: list[Pending] = field(default_factory=list)

    def take(self, lane: str | None, *, unstarted: bool = False) -> Pending | None:
        """The oldest pending response on ``lane`` (the Realtime API has one lane)."""
        for i, p in enumerate(self.pending):
            if (p.lane == lane or self.endpoint.match.family == providers.OPENAI_REALTIME) and not (
                unstarted and p.started
            ):
                return self.pending.pop(i)
        return None


def is_upgrade(request: http.Request) -> bool:
    return request.method == "GET" and request.headers.get("upgrade", "").lower() == "websocket"


class SocketMeter:
    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    # -- the upgrade ---------------------------------------------------------------------------

    def upgrade(self, flow: http.HTTPFlow, host: str, agent_header: str | None) -> None:
        """Attribute a WebSocket upgrade; refuse it (403/429/503) as the HTTP gate would."""
        path = flow.request.path
        ep = ws.endpoint(host, path)
        if ep is None:
            if providers.is_provider_host(host, self.meter.catalogue):
                log.warning("unmetered WebSocket to %s%s: not an API the meter understands", host,
                            path.split("?", 1)[0])  # fmt: skip
            return
        meter, family = self.meter, providers.OPENAI_RESPONSES  # the upgrade is answered in OpenAI's shape
        match = providers.Match(ep.match.provider, family, ep.match.price_provider)
        if meter.ledger is None or meter.directory is None:
            meter._unavailable(flow, match, meter.ledger_problem)
            return
        source = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        try:
            bottle, state = meter.directory.lookup(source)
        except LedgerError as e:
            meter._unavailable(flow, match, str(e))
            return
        if bottle is None:
            meter._reply(flow, 403, {"error": {"message": f"bbnet: {source} is not a known bottle"},
                                     "bbnet_code": "UNKNOWN_SOURCE"})  # fmt: skip
            log.warning("refused WebSocket %s%s: source %s is not a bottle", host, ep.path, source)
            metrics.deny("UNKNOWN_SOURCE", match.provider)
            return
        if state != "open":
            meter._deny(flow, match, None, f"bottle {bottle.name} is {state}")
            return
        agent = agent_header if agent_header and AGENT_NAME_RE.fullmatch(agent_header) else ep.match.provider
        flow.metadata[SOCKET] = Socket(ep, bottle.name, agent, ws.Session(ep.model))
        log.info("websocket bottle=%s agent=%s provider=%s api=%s", bottle.name, agent, ep.match.provider,
                 ep.match.family)  # fmt: skip

    # -- messages ------------------------------------------------------------------------------

    def message(self, flow: http.HTTPFlow) -> None:
        sock = flow.metadata.get(SOCKET)
        if not isinstance(sock, Socket) or flow.websocket is None:
            return
        msg = flow.websocket.messages[-1]
        if msg.injected:
            return
        if msg.from_client:
            self._client(flow, sock, msg)
        else:
            self._server(flow, sock, msg)

    def _client(self, flow: http.HTTPFlow, sock: Socket, msg: websocket.WebSocketMessage) -> None:
        reading, sock.session = ws.read_client(sock.endpoint, sock.session, msg.content, msg.is_text)
        if isinstance(reading, ws.Forward):
            return
        if isinstance(reading, ws.Refuse):
            self._refuse(flow, sock, msg, errors.BAD_MESSAGE, None, reading.reason, reading.event_id)
            log.warning("refused a WebSocket message from bottle %s: %s", sock.bottle, reading.reason)
            return
        meter = self.meter
        try:
            reserved = self._reserve(flow, sock, reading.plan, reading.event_id)
        except LedgerError as e:
            self._unavailable(flow, sock, msg, reading, str(e))
            return
        if reserved is None:
            msg.drop()
            return
        key, result, held = reserved
        plan = reading.plan
        if result.outcome is Outcome.DENY:
            if result.exhausted and result.governing is not None and meter.on_exhausted:
                meter.on_exhausted(sock.bottle, result.governing, result.needed)
            self._refuse(flow, sock, msg, errors.BUDGET_DENIED, result.governing, "", reading.event_id,
                         result.needed)  # fmt: skip
            log.info("deny bottle=%s agent=%s provider=%s model=%s governing=%s (websocket)", sock.bottle,
                     sock.agent, plan.provider, plan.model, result.governing.scope if result.governing else "-")  # fmt: skip
            return
        if result.outcome is Outcome.DEGRADE and plan.cappable:
            msg.content = ws.degrade(reading, result.allowed_output_tokens)
        call = meter.new_call(
            flow, key, sock.bottle, sock.agent, sock.endpoint, plan, msg.content, result, held
        )
        sock.pending.append(Pending(call, reading.lane, reading.event_id))

    def _reserve(self, flow: http.HTTPFlow, sock: Socket, plan: gate.Plan,
                 event_id: str | None) -> tuple[str, ReserveResult, Held | None] | None:  # fmt: skip
        """Reserve one response of the socket; None (and the socket closed) when its bottle is no
        longer open. Raises LedgerError when the ledger cannot be used."""
        meter = self.meter
        if meter.ledger is None or meter.directory is None:
            raise LedgerError(meter.ledger_problem)
        source = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        bottle, state = meter.directory.lookup(source)
        if bottle is None or bottle.name != sock.bottle or state != "open":
            why = f"bottle {sock.bottle} is {state if bottle else 'gone'}: the socket is closed"
            close(
                flow,
                errors.socket_error(sock.endpoint.match.family, errors.BUDGET_DENIED, None, why, event_id),
            )
            log.info("closed a WebSocket of bottle %s: it is %s", sock.bottle, state if bottle else "gone")
            return None
        sock.created += 1
        key = f"{flow.id}:{sock.created}"
        rate = rates(sock.endpoint.match.price_provider, plan.model, plan.input_tokens)
        return key, *meter.reserve(
            gate.reserve_request(plan, key, sock.bottle, sock.agent, rate, meter.lease_seconds)
        )

    def _unavailable(self, flow: http.HTTPFlow, sock: Socket, msg: websocket.WebSocketMessage,
                     reading: ws.Create, problem: str) -> None:  # fmt: skip
        if self.meter.fail_open:
            log.warning("BBNET_FAIL_OPEN=1: forwarding a WebSocket response.create unmetered (%s)",
                        errors.redact(problem))  # fmt: skip
            return
        self._refuse(
            flow, sock, msg, errors.BUDGET_CONFIG, None, f"ledger unavailable: {problem}", reading.event_id
        )

    @staticmethod
    def _refuse(flow: http.HTTPFlow, sock: Socket, msg: websocket.WebSocketMessage, code: str,
                governing: PoolView | None, detail: str, event_id: str | None, needed: int = 0) -> None:  # fmt: skip
        """Drop the client's message and answer it with an error event; the socket stays open."""
        msg.drop()
        metrics.deny(code, sock.endpoint.match.provider)
        event = errors.socket_error(sock.endpoint.match.family, code, governing, detail, event_id, needed)
        ctx.master.commands.call("inject.websocket", flow, True, event, True)

    def _server(self, flow: http.HTTPFlow, sock: Socket, msg: websocket.WebSocketMessage) -> None:
        family = sock.endpoint.match.family
        reading = ws.read_server(family, msg.content, msg.is_text, sock.session.model)
        if reading is None:
            return
        sock.session = ws.observe_server(sock.session, family, reading)
        if isinstance(reading, ws.Started):
            starting = next((p for p in sock.pending if not p.started and (
                p.lane == reading.lane or family == providers.OPENAI_REALTIME)), None)  # fmt: skip
            if starting is not None:
                starting.started = True
            elif family == providers.OPENAI_REALTIME:
                self._server_started(flow, sock)
        elif isinstance(reading, ws.Finished):
            pending = sock.take(reading.lane)
            if pending is None:
                log.warning(
                    "unmetered response on a WebSocket of bottle %s: no reservation matches it", sock.bottle
                )
                return
            if reading.usage is None and reading.failed:
                self.meter._release(pending.call, "the response failed with no usage")
            else:
                self.meter._commit(pending.call, reading.usage, RESPONSE_STATUS)
            if pending.over_budget:
                why = "the budget cannot pay for the responses the server starts: the socket is closed"
                close(flow, errors.socket_error(family, errors.BUDGET_DENIED, pending.call.reservation.governing
                                                if pending.call.reservation else None, why))  # fmt: skip
        elif isinstance(reading, ws.ServerError):
            refused = self._refused(sock, reading)
            if refused is not None:
                self.meter._release(refused.call, "the API answered response.create with an error")

    def _server_started(self, flow: http.HTTPFlow, sock: Socket) -> None:
        """A Realtime response the server started on its own (voice activity detection): reserved
        as it starts. If the budget cannot pay, it is still metered to its end (it cannot be
        stopped on the way), then the socket is closed."""
        meter = self.meter
        plan = ws.realtime_plan(sock.endpoint, sock.session, {})
        try:
            reserved = self._reserve(flow, sock, plan, None)
        except LedgerError as e:
            log.error(
                "a server-started response of bottle %s goes unmetered: %s",
                sock.bottle,
                errors.redact(str(e)),
            )
            return
        if reserved is None:
            return
        key, result, held = reserved
        denied = result.outcome is Outcome.DENY
        if denied:
            log.warning("bottle %s: the server started a response the budget cannot pay for (%s); closing the"
                        " socket when it ends", sock.bottle, result.governing.scope if result.governing else "-")  # fmt: skip
        call = meter.new_call(flow, key, sock.bottle, sock.agent, sock.endpoint, plan, b"{}", result, held)
        sock.pending.append(Pending(call, None, None, started=True, over_budget=denied))

    @staticmethod
    def _refused(sock: Socket, error: ws.ServerError) -> Pending | None:
        """The response.create an error event refuses: the Realtime API names it; the Responses API
        refuses the oldest one on its lane that has not started."""
        if sock.endpoint.match.family == providers.OPENAI_REALTIME:
            for i, p in enumerate(sock.pending):
                if error.client_event_id is not None and p.event_id == error.client_event_id:
                    return sock.pending.pop(i)
            return None
        return sock.take(error.lane, unstarted=True)

    def end(self, flow: http.HTTPFlow) -> None:
        """The socket closed: responses still in flight showed no usage, so they are released."""
        sock = flow.metadata.get(SOCKET)
        if not isinstance(sock, Socket):
            return
        code = flow.websocket.close_code if flow.websocket is not None else None
        for pending in sock.pending:
            self.meter._release(
                pending.call, f"the WebSocket closed (code {code}) with the response in flight"
            )
        sock.pending.clear()


def close(flow: http.HTTPFlow, event: bytes) -> None:
    """Close a WebSocket from the proxy: ``event`` (an error event saying why) goes to the client,
    then mitmproxy's WebSocket layer is told the server side closed, so it sends the client a close
    frame, closes both connections and runs ``websocket_end``. Both are injected on the client's
    connection handler in order. (mitmproxy has no command to close a WebSocket, its issue 4773.)"""
    ctx.master.commands.call("inject.websocket", flow, True, event, True)
    server = ctx.master.addons.get("proxyserver")
    handler = server.connections.get(flow.client_conn.id) if server is not None else None
    if handler is None:
        return
    task = asyncio.get_running_loop().create_task(
        handler.server_event(events.ConnectionClosed(flow.server_conn))
    )
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # the close tasks, referenced until done
