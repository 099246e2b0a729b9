"""The mitmproxy addon: attribute, reserve, forward, tap, commit — a thin shell over the gate.

Per LLM request (classified from the *original* host, before any upstream remap):
``request`` attributes the flow to a bottle, reserves the projected spend and answers DENY itself
(the provider never sees it); ``responseheaders`` puts a :class:`StreamTap` on streamed answers;
``response`` commits real usage (or the flagged estimate); ``error`` commits what a broken stream
showed, else releases. Endpoints the catalogue marks free (token counting, model listings) pass
untouched. A request body in a ``Content-Encoding`` is decoded for the estimate and forwarded as
it came; when the gate edits it, the edit is re-encoded in the same coding (mitmproxy's
``set_content``; a chain of codings it cannot re-apply goes decoded, its header dropped). A body that does not decode is refused with 400 ``BAD_CONTENT_ENCODING`` in the
provider's error shape, before any reservation. Every call ends as exactly one usage row or one released reservation.
Those ledger writes run on the event loop just after the answer has been sent, not before it.
WebSocket upgrades and their messages are handed to :class:`meter.ws_addon.SocketMeter`, which
meters each response on the socket the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import http, tcp

from bbnet import metrics, prices, providers
from bbnet.checkpoint import Checkpointer
from bbnet.dialect import SQLITE
from bbnet.egress import Policy
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import (
    Bottle,
    CommitResult,
    Outcome,
    PoolView,
    ReserveRequest,
    ReserveResult,
    UsageRecord,
)
from bbnet.names import AGENT_NAME_RE
from bbnet.stake_journal import JournalInUse
from meter import egress, errors, estimate, gate, request, shape
from meter.attribution import AGENT_HEADER, Directory
from meter.prefix import PrefixMemory, Recall
from meter.stake import Held, Stake
from meter.tap import StreamTap, is_streamed_response
from meter.usage import Usage, from_body
from meter.writes import LedgerWrites, after_answer
from meter.ws import Endpoint
from meter.ws_addon import SocketMeter

log = logging.getLogger("bbnet.meter")
DEGRADED_HEADER = "x-bbnet-degraded"
JOURNAL_RETRY_S = 1.0  # how often writes waiting for an unreachable ledger are retried
STAKE_IDLE_S = 1.0  # a stake's free room goes back to the pools after this long with no call admitted
META = "bbnet"

#: Called after every commit (the controller's wake-up) and after a DENY that found a pool
#: exhausted by real usage; both run on the proxy's event loop and must not block.
OnCommit = Callable[[str, CommitResult], None]
OnExhausted = Callable[[str, PoolView, int], None]  # bottle, pool, what the refused call needed


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int


def parse_upstream_map(items: list[str]) -> dict[str, Upstream]:
    """``HOST=URL`` pairs (``*`` matches any host): where to send a host's traffic instead."""
    out: dict[str, Upstream] = {}
    for item in items:
        host, sep, url = item.partition("=")
        parts = urlsplit(url)
        if not sep or not host or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid --upstream-map {item!r}: expected HOST=http[s]://ADDRESS[:PORT]")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        out[host.lower()] = Upstream(parts.scheme, parts.hostname, port)
    return out


@dataclass
class Call:
    """One metered call's state, kept in ``flow.metadata``."""

    key: str
    bottle: str
    agent: str
    match: providers.Match
    plan: gate.Plan
    request_body: bytes
    host: str
    path: str
    started: float
    reservation: ReserveResult | None  # None: fail-open, unmetered
    held: Held | None = None  # its hold is in the meter's stake (meter/stake.py), not a reservation row
    degraded_to: int | None = None
    injected_usage: bool = False
    tap: StreamTap | None = None
    finished: bool = field(default=False)
    socket: bool = False  # one response of a WebSocket (meter/ws_addon.py)
    shape: shape.Shape | None = None  # where the body's conversation sits, when read from an earlier one
    recalled: Recall | None = None  # what the prefix memory found for the body
    doc: dict[str, Any] | None = None  # the body parsed whole (when it was), for its shape at learning


class Meter:
    def __init__(
        self,
        ledger: Ledger | None,
        *,
        ledger_problem: str = "",
        fail_open: bool = False,
        lease_seconds: float = 300.0,
        upstream: dict[str, Upstream] | None = None,
        catalogue: tuple[providers.Provider, ...] = providers.BUILTIN,
        on_commit: OnCommit | None = None,
        on_exhausted: OnExhausted | None = None,
        egress_default: Policy | None = None,
        stakes: bool = True,
    ) -> None:
        self.ledger = ledger
        self.ledger_problem = ledger_problem or ("" if ledger else "ledger unavailable")
        self.fail_open = fail_open
        self.lease_seconds = lease_seconds
        self.upstream = upstream or {}
        self.catalogue = catalogue
        self.on_commit = on_commit
        self.on_exhausted = on_exhausted
        self.directory = Directory(ledger) if ledger else None
        self.egress_default = egress_default or Policy()  # the settings' egress: section
        self.sockets = SocketMeter(self)
        self.memory = PrefixMemory()  # each agent's recent calls and their real input counts
        self._live: dict[str, http.HTTPFlow] = {}  # calls holding a reservation, by key
        self._renewer: asyncio.Task[None] | None = None
        # commits and releases, a transaction per turn of the loop; and those waiting for the ledger
        self.writes: LedgerWrites[Call] | None = LedgerWrites(ledger, self._committed) if ledger else None
        self._replayer: asyncio.Task[None] | None = None
        self._checkpoints: Checkpointer | None = None
        self.stakes = stakes  # admit calls from a stake (SQLite ledgers; meter/stake.py)
        self.stake: Stake | None = None
        self._idler: asyncio.Task[None] | None = None

    def running(self) -> None:
        prices.load()  # before the first call, not on it
        if self.writes is not None and self._renewer is None:  # a ledger to write to
            ledger = self.writes.ledger
            self._renewer = asyncio.get_running_loop().create_task(self._renew_leases(ledger))
            self._replayer = asyncio.get_running_loop().create_task(self._replay_journal(self.writes))
            self._checkpoints = ledger.checkpoint_in_background()
            self._open_stake(ledger)
        if self.fail_open:
            log.warning("BBNET_FAIL_OPEN=1: calls are forwarded unmetered when the ledger cannot be used")
        if self.ledger is None:  # WARNING: an ERROR logged during startup makes mitmproxy exit
            fate = "forwarded unmetered" if self.fail_open else "answered 503 BUDGET_CONFIG"
            log.warning("ledger unavailable (%s): LLM calls are %s", self.ledger_problem, fate)

    def _open_stake(self, ledger: Ledger) -> None:
        """Settle the stakes of this node's dead meters, then hold one of this meter's own."""
        if not self.stakes or ledger.dialect != SQLITE or not ledger.takes_stakes:
            return
        try:
            for bottle, result in ledger.settle_dead_stakes():
                log.warning("a dead meter's call %s (bottle %s) billed as lost", result.key, bottle)
            stake = Stake(ledger, ledger.path.with_name(ledger.path.name + ".stakes"), self.lease_seconds)
        except (LedgerError, OSError, JournalInUse) as e:  # WARNING: an ERROR at startup stops mitmproxy
            log.warning("no stake (%s): every call is reserved in the ledger", errors.redact(str(e)))
            return
        self.use_stake(stake)
        self._idler = asyncio.get_running_loop().create_task(self._return_idle_stake(stake))

    def use_stake(self, stake: Stake) -> None:
        """Admit calls from ``stake``, and refill its free room with the commits."""
        self.stake = stake
        if self.writes is not None:
            self.writes.top_ups = stake

    def done(self) -> None:
        for task in (self._renewer, self._replayer, self._idler):
            if task is not None:
                task.cancel()
        self._renewer = self._replayer = self._idler = None
        if self.writes is not None:
            self.writes.flush()
            if self.writes.journal:
                log.error("stopping with %d ledger writes unwritten: their leases expire and are billed as lost",
                          len(self.writes.journal))  # fmt: skip
        if self.stake is not None:
            if self.writes is not None:
                self.writes.top_ups = None
            try:
                self.stake.close()
            except LedgerError as e:
                log.error("stake %s not settled (%s): settled when its lease expires", self.stake.key,
                          errors.redact(str(e)))  # fmt: skip
            self.stake = None
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None

    async def _renew_leases(self, ledger: Ledger) -> None:
        """Keep the leases of the calls in flight from running out, however long a call takes: only a
        dead meter's leases expire, and those are billed as lost calls (``Ledger.sweep_expired``)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            for key, flow in list(self._live.items()):
                if not flow.live:  # ended without a hook that settles it: the sweep bills it
                    del self._live[key]
            seen = {key: _output_seen(flow) for key, flow in self._live.items()}
            rows = {key: n for key, n in seen.items() if not _in_stake(self._live[key])}
            try:
                if self.stake is not None:
                    self.stake.seen({key: n for key, n in seen.items() if key not in rows})
                    self.stake.renew()
                if rows:
                    ledger.renew(rows, self.lease_seconds)
            except (LedgerError, OSError) as e:
                log.error("renewing %d leases failed: %s", len(self._live), errors.redact(str(e)))

    async def _return_idle_stake(self, stake: Stake) -> None:
        """Give the stake's free room back once no call has been admitted for a while, so other
        meters on the ledger (and its reports) see it."""
        while True:
            await asyncio.sleep(STAKE_IDLE_S)
            if time.monotonic() - stake.last_admitted >= STAKE_IDLE_S and stake is self.stake:
                try:
                    stake.return_free()
                except LedgerError as e:
                    log.error("returning the stake's free room failed: %s", errors.redact(str(e)))

    # -- request -------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        agent_header = req.headers.pop(AGENT_HEADER, None)
        host, path = req.pretty_host, req.path
        source = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        found = self._who(source)
        decision = egress.decide(self._policy(found), self.catalogue, req.method, host, path,
                                 req.headers.get("upgrade"))  # fmt: skip
        if decision.refused:
            self._refuse(flow, decision, found, host, f"{req.method} {path.split('?', 1)[0]}")
            return
        if decision.match is not None and flow.response is None:
            self._gate(flow, decision.match, host, path, agent_header, source, found)
        elif decision.verdict is egress.Verdict.WEBSOCKET and flow.response is None:
            self.sockets.upgrade(flow, host, agent_header)
        if flow.response is None:
            self._remap(flow, host)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        """A connection that is not HTTP (raw TCP through CONNECT): only to a host a rule allows whole."""
        host = str(flow.server_conn.address[0]) if flow.server_conn.address else ""
        found = self._who(flow.client_conn.peername[0] if flow.client_conn.peername else "")
        decision = egress.decide_connection(self._policy(found), self.catalogue, host)
        if decision.refused:  # the connection upstream is opened next (lazily): an error here stops it
            flow.server_conn.error = f"bbnet: {decision.verdict.value}: egress to {host} refused"
            self._note_refusal(found, host, decision.verdict.value, "TCP")

    # -- egress --------------------------------------------------------------------------------

    def _who(self, source: str) -> tuple[Bottle | None, str] | LedgerError | None:
        """The source's bottle and state; None: no ledger; the error when the ledger failed."""
        if self.directory is None:
            return None
        try:
            return self.directory.lookup(source)
        except LedgerError as e:
            return e

    def _policy(self, found: tuple[Bottle | None, str] | LedgerError | None) -> Policy:
        """The bottle's own policy, else the host default (also for unknown sources and no ledger)."""
        if isinstance(found, tuple) and found[0] is not None and self.directory is not None:
            return self.directory.policy(found[0].name) or self.egress_default
        return self.egress_default

    def _refuse(self, flow: http.HTTPFlow, decision: egress.Decision,
                found: tuple[Bottle | None, str] | LedgerError | None, host: str, what: str) -> None:  # fmt: skip
        bottle = found[0].name if isinstance(found, tuple) and found[0] is not None else None
        if decision.verdict is egress.Verdict.UNMETERED and decision.family is not None:
            detail = (
                f"{what} on {host} is not metered; the egress policy refuses it (unmetered: allow opens it)"
            )
            err = errors.gate_error(decision.family, errors.UNMETERED, detail=detail)
        else:
            err = errors.egress_denied(host, bottle)
        flow.response = http.Response.make(err.status, err.body, err.headers)
        self._note_refusal(found, host, decision.verdict.value, what)

    def _note_refusal(self, found: tuple[Bottle | None, str] | LedgerError | None, host: str, code: str,
                      what: str) -> None:  # fmt: skip
        bottle = found[0].name if isinstance(found, tuple) and found[0] is not None else ""
        metrics.refusal(code)
        log.info("refused bottle=%s host=%s code=%s %s", bottle or "-", host, code, errors.redact(what))
        if self.ledger is not None:
            after_answer(self._write_refusal, self.ledger, bottle, host, code, what)

    @staticmethod
    def _write_refusal(ledger: Ledger, bottle: str, host: str, code: str, what: str) -> None:
        try:
            ledger.record_refusal(bottle, host, code, what)
        except LedgerError as e:
            log.error("refusal not recorded (bottle %s, host %s): %s", bottle, host, errors.redact(str(e)))

    # -- the gate ------------------------------------------------------------------------------

    def _gate(self, flow: http.HTTPFlow, match: providers.Match, host: str, path: str, agent_header: str | None,
              source: str, found: tuple[Bottle | None, str] | LedgerError | None) -> None:  # fmt: skip
        if self.ledger is None or found is None:
            self._unavailable(flow, match, self.ledger_problem)
            return
        if isinstance(found, LedgerError):
            self._unavailable(flow, match, str(found))
            return
        bottle, state = found
        if bottle is None:
            self._reply(flow, 403, {"error": {"message": f"bbnet: {source} is not a known bottle"},
                                    "bbnet_code": "UNKNOWN_SOURCE"})  # fmt: skip
            log.warning("refused %s %s%s: source %s is not a bottle", flow.request.method, host, path, source)
            metrics.deny("UNKNOWN_SOURCE", match.provider)
            return
        if state != "open":
            self._deny(flow, match, None, f"bottle {bottle.name} is {state}")
            return
        agent = agent_header if agent_header and AGENT_NAME_RE.fullmatch(agent_header) else match.provider
        try:
            body = request.decoded_body(
                flow.request.raw_content or b"", flow.request.headers.get("content-encoding")
            )
        except request.RequestError as e:  # the provider could not read it either: refuse, hold nothing
            err = errors.gate_error(match.family, errors.BAD_CONTENT_ENCODING, detail=str(e))
            flow.response = http.Response.make(err.status, err.body, err.headers)
            log.warning("refused %s%s from bottle %s: %s", host, path.split("?", 1)[0], bottle.name, e)
            metrics.deny(errors.BAD_CONTENT_ENCODING, match.provider)
            return
        recall = self.memory.recall(bottle.name, agent, body)
        read = _read_from(recall, body)
        plan, doc = gate.plan_read(
            match, path, body, recall.estimate if recall else None, read.doc if read else None
        )
        key = flow.id
        try:
            result, held = self.reserve(gate.reserve_request(
                plan, key, bottle.name, agent, prices.rates(plan.provider, plan.model, plan.input_tokens),
                self.lease_seconds))  # fmt: skip
        except LedgerError as e:
            self._unavailable(flow, match, str(e))
            return
        if result.outcome is Outcome.DENY:
            if result.exhausted and result.governing is not None and self.on_exhausted:
                self.on_exhausted(bottle.name, result.governing, result.needed)
            self._deny(flow, match, result.governing, "", result.needed)
            log.info("deny bottle=%s agent=%s provider=%s model=%s governing=%s", bottle.name, agent,
                     plan.provider, plan.model, result.governing.scope if result.governing else "-")  # fmt: skip
            return
        rw = gate.rewrite(plan, body, result, doc)
        if rw.body is not body:
            flow.request.set_content(rw.body)  # re-encoded in the request's own Content-Encoding
        flow.metadata[META] = Call(key, bottle.name, agent, match, plan, body, host, path.split("?", 1)[0],
                                   time.monotonic(), result, held, rw.degraded_to, rw.injected_usage,
                                   shape=read.shape if read else None, recalled=recall,
                                   doc=None if read else doc)  # fmt: skip
        self._live[key] = flow

    def reserve(self, req: ReserveRequest) -> tuple[ReserveResult, Held | None]:
        """Hold the call's projected spend: from the stake's free room when it covers the call, else
        decided by the ledger in one transaction with the commits and releases queued. A call held
        in the stake is journalled here, before it can be forwarded."""
        if self.writes is None:
            raise LedgerError(self.ledger_problem)
        if self.stake is None:
            return self.writes.reserve(req), None
        return self.stake.reserve(req, self.writes.admit)

    def _unavailable(self, flow: http.HTTPFlow, match: providers.Match, problem: str) -> None:
        if self.fail_open:
            log.warning("BBNET_FAIL_OPEN=1: forwarding %s%s unmetered (%s)", match.provider, flow.request.path,
                        errors.redact(problem))  # fmt: skip
            metrics.fail_open(match.provider)
            return
        metrics.deny(errors.BUDGET_CONFIG, match.provider)
        err = errors.gate_error(match.family, errors.BUDGET_CONFIG, detail=f"ledger unavailable: {problem}")
        flow.response = http.Response.make(err.status, err.body, err.headers)

    def _deny(
        self,
        flow: http.HTTPFlow,
        match: providers.Match,
        governing: PoolView | None,
        detail: str,
        needed: int = 0,
    ) -> None:
        metrics.deny(errors.BUDGET_DENIED, match.provider)
        wait = errors.retry_after(governing, time.time())
        err = errors.gate_error(match.family, errors.BUDGET_DENIED, governing, detail, wait, needed)
        flow.response = http.Response.make(err.status, err.body, err.headers)

    @staticmethod
    def _reply(flow: http.HTTPFlow, status: int, body: dict[str, object]) -> None:
        flow.response = http.Response.make(
            status, json.dumps(body).encode(), {"content-type": "application/json"}
        )

    def _remap(self, flow: http.HTTPFlow, host: str) -> None:
        target = self.upstream.get(host.lower()) or self.upstream.get("*")
        if target is not None:
            flow.request.scheme, flow.request.host, flow.request.port = (
                target.scheme,
                target.host,
                target.port,
            )

    # -- response ------------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get(META)
        if not isinstance(call, Call) or flow.response is None:
            return
        resp = flow.response
        if call.degraded_to is not None:
            resp.headers[DEGRADED_HEADER] = f"max_output_tokens={call.degraded_to}"
        if is_streamed_response(call.match.family, call.path, resp.headers.get("content-type")):
            call.tap = StreamTap(call.match.family, resp.headers.get("content-encoding"), call.injected_usage,
                                 content_type=resp.headers.get("content-type"), model_hint=call.plan.model)  # fmt: skip
            if call.tap.forwards_decoded:
                resp.headers.pop("content-encoding", None)
                resp.headers.pop("content-length", None)
            resp.stream = call.tap

    def response(self, flow: http.HTTPFlow) -> None:
        call = flow.metadata.get(META)
        if not isinstance(call, Call) or call.finished or flow.response is None:
            return
        resp = flow.response
        if call.tap is not None:
            found = call.tap.result().usage
        else:
            found = from_body(
                call.match.family, resp.get_content(strict=False) or b"", resp.headers, call.plan.model
            )
        if found is None and resp.status_code >= 400:
            self._release(call, f"upstream answered {resp.status_code} with no usage")
            return
        self._commit(call, found, resp.status_code)

    def error(self, flow: http.HTTPFlow) -> None:
        """Upstream failure or client disconnect: commit what was seen, else release."""
        call = flow.metadata.get(META)
        if not isinstance(call, Call) or call.finished:
            return
        seen = call.tap.result().usage if call.tap is not None else None
        status = flow.response.status_code if flow.response is not None else None
        if seen is not None:
            self._commit(call, seen, status)
        else:
            self._release(call, flow.error.msg if flow.error else "flow failed")

    # -- WebSocket messages (meter/ws_addon.py) ------------------------------------------------

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        self.sockets.message(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.sockets.end(flow)

    def new_call(self, flow: http.HTTPFlow, key: str, bottle: str, agent: str, ep: Endpoint, plan: gate.Plan,
                 body: bytes, reservation: ReserveResult, held: Held | None) -> Call:  # fmt: skip
        """The :class:`Call` of one response on the WebSocket ``flow``, committed like an HTTP call's
        (and its lease renewed while the socket is open)."""
        degraded = reservation.allowed_output_tokens if reservation.outcome is Outcome.DEGRADE else None
        self._live[key] = flow
        return Call(key, bottle, agent, ep.match, plan, body, ep.host, ep.path, time.monotonic(), reservation,
                    held, degraded, socket=True)  # fmt: skip

    # -- finishing a call: decided in the hook, written once the answer has left (meter/writes.py) --

    def _commit(self, call: Call, found: Usage | None, status: int | None) -> None:
        call.finished = True
        self._live.pop(call.key, None)
        if self.writes is None or call.reservation is None:
            return
        usage = found or estimate.fallback_usage(call.match.family, call.request_body, call.plan.model)
        record = UsageRecord(
            bottle=call.bottle, agent=call.agent, provider=call.match.provider, model=usage.model or call.plan.model,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_write_tokens=usage.cache_write_tokens, cache_read_tokens=usage.cache_read_tokens,
            reasoning_tokens=usage.reasoning_tokens, family=call.match.family, host=call.host, path=call.path,
            estimated=found is None, stream=call.tap is not None or call.socket, status=status,
            latency_ms=round((time.monotonic() - call.started) * 1000, 3),
        )  # fmt: skip
        # learnt now, not once written: the agent's next turn may come before the write
        if found is not None and not call.socket:
            body = call.request_body  # its input count includes the cache's
            known = call.shape or (
                shape.of(body, call.match.family, call.doc) if call.plan.readable else None
            )
            self.memory.learn(call.bottle, call.agent, body, record.input_tokens, known, call.recalled)
        held = call.held
        self.writes.commit(call.key, call, record, held.stake if held else None, held.holds if held else ())

    def _release(self, call: Call, why: str) -> None:
        call.finished = True
        self._live.pop(call.key, None)
        if self.writes is None or call.reservation is None:
            return
        if call.held is not None:  # no ledger write: the hold is free room in the stake again
            if self.stake is not None:
                self.stake.released(call.key, call.held)
            log.info("release bottle=%s key=%s: %s", call.bottle, call.key, errors.redact(why))
            return
        self.writes.release(call.key, call, why)

    def _committed(self, call: Call, record: UsageRecord, result: CommitResult) -> None:
        if call.held is not None and self.stake is not None:
            self.stake.committed(call.key)
        log.info("commit bottle=%s agent=%s provider=%s model=%s in=%d out=%d estimated=%s exhausted=%s",
                 call.bottle, call.agent, record.provider, record.model, record.input_tokens, record.output_tokens,
                 record.estimated, ",".join(p.scope for p in result.exhausted) or "-")  # fmt: skip
        if self.on_commit is not None:
            self.on_commit(call.bottle, result)

    @staticmethod
    async def _replay_journal(writes: LedgerWrites[Call]) -> None:
        """Write what waits in the journal, in order, once the ledger answers again."""
        while True:
            await asyncio.sleep(JOURNAL_RETRY_S)
            writes.replay()


def _read_from(recall: Recall | None, body: bytes) -> shape.Read | None:
    """The body read from the shape of the remembered call it shares its start with (meter/shape.py),
    when that call's shape is known: its top-level members without parsing its whole conversation."""
    if recall is None or recall.overlap.known.shape is None:
        return None
    return shape.follow(recall.overlap.known.shape, body, recall.overlap.prefix, recall.overlap.suffix)


def _in_stake(flow: http.HTTPFlow) -> bool:
    call = flow.metadata.get(META)
    return isinstance(call, Call) and call.held is not None


def _output_seen(flow: http.HTTPFlow) -> int:
    """The output tokens a call's stream has shown so far (0 before any, or when not streamed)."""
    call = flow.metadata.get(META)
    usage = call.tap.result().usage if isinstance(call, Call) and call.tap is not None else None
    return usage.output_tokens if usage is not None else 0
