"""The provider simulator (``bbnet sim``): an HTTP/1.1 server speaking the providers' wire formats.

Tests, benchmarks and the demo point SDKs (or the meter's upstream) at it. It answers every path
the provider catalogue lists — Anthropic Messages (also on Vertex), OpenAI Chat Completions,
Responses (and compaction) and embeddings (also on Azure), Gemini (also on Vertex and in Code
Assist's envelope) and its embeddings, Bedrock Runtime (Converse, InvokeModel, embeddings), and
the free endpoints (token counts, model listings) — in JSON and streamed, with usage computed
from the request (:mod:`meter.sim_plan` has the rule), or replays
a HAR file's recorded responses (:mod:`meter.sim_replay`).

WebSocket: the Responses API's WebSocket mode and the Realtime API (:mod:`meter.sim_ws`); each
``response.create`` counts in the statistics like a request.

Control endpoints: ``GET /_sim/health``, ``GET /_sim/stats`` (counts of provider requests: total,
streamed, by family, by path, by status, by "method path status", and the tokens generated), ``POST /_sim/reset``.

A request body in a ``Content-Encoding`` (gzip, deflate, br, zstd) is decoded first, as the
providers do; one that does not decode is answered 400. One thread per connection (keep-alive); streams use chunked transfer encoding, one HTTP chunk
per event, flushed at once, with the chunk delay between events. Nothing is logged but method,
path (never the query: Gemini puts API keys there) and status.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from meter import sim_ws
from meter.request import RequestError, decoded_body
from meter.sim_plan import DEFAULT_OUTPUT_TOKENS
from meter.sim_replay import ReplayBook, load_har
from meter.sim_route import Answer, SimConfig, answer
from meter.sim_wire import Reply, error_reply, guess_family, json_reply

log = logging.getLogger("bbnet.sim")
MAX_REQUEST_BODY = 32 * 1024 * 1024


class SimStats:
    """Counts of the provider requests received since start or the last reset. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._streamed = 0
            self._input_tokens = 0
            self._output_tokens = 0
            self._by_family: Counter[str] = Counter()
            self._by_path: Counter[str] = Counter()
            self._by_status: Counter[str] = Counter()
            self._requests: Counter[str] = Counter()

    def record(self, method: str, path: str, result: Answer) -> None:
        with self._lock:
            self._requests[f"{method} {path} {result.reply.status}"] += 1
            self._total += 1
            self._streamed += result.reply.chunks is not None
            self._by_family[result.family or "unknown"] += 1
            self._by_path[path] += 1
            self._by_status[str(result.reply.status)] += 1
            if result.plan is not None:
                self._input_tokens += result.plan.input_tokens
                self._output_tokens += result.plan.output_tokens

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "streamed": self._streamed,
                "by_family": dict(self._by_family),
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "requests": dict(self._requests),  # "METHOD path status": what each client asked
                "input_tokens": self._input_tokens,
                "output_tokens": self._output_tokens,
            }


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a few dozen clients connecting at once must not be refused

    def __init__(self, address: tuple[str, int], config: SimConfig) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.config = config
        self.stats = SimStats()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, SimHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up (reset, timeout) is routine for a server; anything else is reported."""
        if isinstance(sys.exception(), ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Cut open keep-alive connections so their threads end (used on stop)."""
        with self.connections_lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bbnet-sim"
    sys_version = ""
    server: SimServer
    timeout = 120  # an idle keep-alive connection is closed after this many seconds

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the stdlib line holds the full request line, query (and keys) included."""

    def do_GET(self) -> None:
        path = urlsplit(self.path)
        family = sim_ws.socket_family(path.path)
        if self.headers.get("upgrade", "").lower() == "websocket" and family is not None:
            self._websocket(family, path.path, parse_qs(path.query))
            return
        self._handle()

    def _websocket(self, family: str, path: str, query: dict[str, list[str]]) -> None:
        """Hand the connection to :mod:`meter.sim_ws` until the socket closes."""
        self.close_connection = True
        head = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        handshake = f"{self.requestline}\r\n{head}\r\n".encode("latin-1")
        model = (query.get("model") or query.get("deployment") or [""])[0] or None
        # each response.create counts as one request, under the method "WS"
        session = sim_ws.Session(
            family, path, model, self.server.config, partial(self.server.stats.record, "WS")
        )
        log.info("GET %s -> 101 (websocket)", path)
        sim_ws.serve(_Stream(self), handshake, session)

    def do_POST(self) -> None:
        self._handle()

    def _read_body(self) -> bytes | None:
        """The request body; None when it is over the limit. Raises ValueError on bad framing."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                if size < 0:
                    raise ValueError(f"negative chunk size {size}")
                total += size
                if total > MAX_REQUEST_BODY:
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after the chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        if length < 0:
            raise ValueError(f"negative content-length {length}")
        return None if length > MAX_REQUEST_BODY else self.rfile.read(length)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "malformed request body framing")
            return
        if body is None:
            self.close_connection = True
            self.send_error(413, f"request body over {MAX_REQUEST_BODY} bytes")
            return
        if path.startswith("/_sim/"):
            self._send(self._control(path), chunk_delay=0.0)
            return
        try:  # as the providers do: a body in a Content-Encoding (Codex sends zstd) is decoded
            body = decoded_body(body, self.headers.get("content-encoding"), MAX_REQUEST_BODY)
        except RequestError as exc:
            family = guess_family(path, "anthropic-version" in self.headers)
            self._send(error_reply(family, 400, str(exc), secrets.token_hex(24)), chunk_delay=0.0)
            return
        config = self.server.config
        result = answer(
            config,
            self.command,
            path,
            url.query,
            body,
            anthropic_client="anthropic-version" in self.headers,
            seed=secrets.token_hex(24),
            now=int(time.time()),
        )
        self.server.stats.record(self.command, path, result)
        time.sleep(config.latency_ms / 1000)
        self._send(result.reply, chunk_delay=config.chunk_delay_ms / 1000)
        log.info("%s %s -> %d", self.command, path, result.reply.status)

    def _control(self, path: str) -> Reply:
        stats = self.server.stats
        if path == "/_sim/health" and self.command == "GET":
            replay = self.server.config.replay
            mode = {"mode": "replay", "recorded": len(replay)} if replay is not None else {"mode": "generate"}
            return json_reply({"status": "ok", **mode})
        if path == "/_sim/stats" and self.command == "GET":
            return json_reply(stats.snapshot())
        if path == "/_sim/reset" and self.command == "POST":
            stats.reset()
            return json_reply({"reset": True})
        return json_reply({"error": f"no simulator control endpoint {self.command} {path}"}, status=404)

    def _send(self, reply: Reply, *, chunk_delay: float) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.chunks is None:
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index, chunk in enumerate(reply.chunks):
                if index and chunk_delay:
                    time.sleep(chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-answer


class _Stream:
    """The handler's connection as :func:`meter.sim_ws.serve` reads and writes it."""

    def __init__(self, handler: SimHandler) -> None:
        self.handler = handler

    def read(self) -> bytes:
        return self.handler.rfile.read1(65536)

    def write(self, data: bytes) -> None:
        self.handler.wfile.write(data)


def make_server(
    host: str,
    port: int,
    *,
    replay: str | Path | None = None,
    latency_ms: int = 0,
    chunk_delay_ms: int = 0,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> SimServer:
    """A bound simulator server (not yet serving). Raises ReplayError or ValueError on bad options."""
    book = ReplayBook(load_har(replay)) if replay is not None else None
    config = SimConfig(latency_ms, chunk_delay_ms, output_tokens, book)
    return SimServer((host, port), config)


def serve_sim(server: SimServer) -> None:
    """Serve a bound simulator until interrupted (blocking)."""
    try:
        server.serve_forever()
    finally:
        server.close_connections()
        server.server_close()


@dataclass
class SimHandle:
    """A simulator serving on a background thread (tests, benchmarks, the demo)."""

    server: SimServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def stats(self) -> dict[str, Any]:
        return self.server.stats.snapshot()

    def reset(self) -> None:
        self.server.stats.reset()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sim(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    replay: str | Path | None = None,
    latency_ms: int = 0,
    chunk_delay_ms: int = 0,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> SimHandle:
    """Start a simulator on a background thread; port 0 picks a free port (see ``.url``)."""
    server = make_server(
        host,
        port,
        replay=replay,
        latency_ms=latency_ms,
        chunk_delay_ms=chunk_delay_ms,
        output_tokens=output_tokens,
    )
    # a short poll interval lets stop() return promptly (shutdown waits for the next poll)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="bbnet-sim", daemon=True)
    thread.start()
    return SimHandle(server, thread)
