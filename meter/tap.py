"""The streaming tap: reads usage from a streamed answer while it passes through, unbuffered.

A :class:`StreamTap` is the ``flow.response.stream`` callable of one streamed response. What we
found in mitmproxy 12's source (``proxy/layers/http/__init__.py``,
``HttpStream.state_stream_response_body`` and ``_http1.py``):

- the callable gets each chunk as received, still content-encoded, and may return ``bytes`` or
  an iterable of ``bytes``; each returned item becomes one ``ResponseData`` event;
- mid-stream, a returned ``b""`` is wrapped as ``[b""]`` and, on HTTP/1.1 chunked transfer, an
  empty data frame is written as ``0\\r\\n\\r\\n`` — the terminating chunk, which *ends the
  response* for the client. An empty *list* sends nothing and keeps the stream open;
- at the end it is called once more with ``b""``; there a returned ``b""`` is turned into ``[]``,
  so held-back bytes can be flushed by returning them.

So :meth:`StreamTap.__call__` always returns a list with no empty items: ``[chunk]`` in the
normal case (the chunk itself, unchanged, forwarded at once), ``[]`` when holding back, the held
bytes at the end. Holding back only ever happens when the meter injected
``stream_options.include_usage`` into an OpenAI chat request (``strip_injected_usage``): then at
most one partial event is held, the usage-only chunk (``choices: []`` + ``usage``) is dropped, and
the ``"usage":null`` member that the option adds to every other chunk is removed, so the client
sees exactly the stream it asked for. If that stream is content-encoded it cannot be edited in
place: the tap then forwards the *decoded* stream and :attr:`StreamTap.forwards_decoded` tells the
addon to drop the response's ``Content-Encoding`` (and ``Content-Length``) headers.

Nothing here raises into mitmproxy: a parse failure is counted (``malformed``), metering of that
stream stops, and the bytes keep flowing unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bbnet import providers
from meter import accumulate
from meter.decode import DecodeError, Decoder, Identity, decoder_for
from meter.eventstream import EventStreamDecoder
from meter.jsonarray import JsonArraySplitter
from meter.sse import DEFAULT_MAX_EVENT_BYTES, Skipped, SseEvent, SseParser
from meter.usage import Usage

_GEMINI_STREAMS = (providers.GEMINI, providers.CODE_ASSIST)  # a JSON array unless ?alt=sse
_USAGE_NULL = (
    re.compile(r',\s*"usage"\s*:\s*null(?=\s*[,}])'),
    re.compile(r'(?<=\{)\s*"usage"\s*:\s*null\s*,'),
)


@dataclass(frozen=True, slots=True)
class TapResult:
    usage: Usage | None  # None: the stream showed no usage (commit the estimate)
    truncated: bool  # ended mid-event, or before the family's terminal event
    malformed: bool  # something could not be decoded or parsed (see ``problem``)
    events: int  # events parsed
    problem: str | None = None  # the first decode/parse failure, one line


class StreamTap:
    def __init__(
        self,
        family: str,
        content_encoding: str | None = None,
        strip_injected_usage: bool = False,
        *,
        content_type: str | None = None,
        model_hint: str | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if strip_injected_usage and family != providers.OPENAI_CHAT:
            raise ValueError(f"strip_injected_usage applies to {providers.OPENAI_CHAT} only, not {family!r}")
        self.family = family
        self.strip = strip_injected_usage
        self._acc = accumulate.for_family(family, model_hint)
        self._problem: str | None = None
        self._failed = False  # metering stopped; bytes still flow
        self._malformed = 0
        self._events = 0
        self._ended = False
        self._done_marker = False  # OpenAI chat "data: [DONE]"
        self._cut_event = False  # the stream ended inside an SSE event
        self._decoder: Decoder = Identity()
        try:
            self._decoder = decoder_for(content_encoding)
        except DecodeError as exc:
            self._fail(str(exc))
        self.forwards_decoded = self.strip and not isinstance(self._decoder, Identity) and not self._failed
        self._sse: SseParser | None = None
        self._array: JsonArraySplitter | None = None
        self._frames: EventStreamDecoder | None = None
        if family in (providers.BEDROCK_CONVERSE, providers.BEDROCK_INVOKE):
            self._frames = EventStreamDecoder()
        elif family in _GEMINI_STREAMS and "event-stream" not in (content_type or "").lower():
            self._array = JsonArraySplitter(max_event_bytes)
        else:
            self._sse = SseParser(max_event_bytes)

    def __call__(self, chunk: bytes) -> list[bytes]:
        """mitmproxy's stream-callable contract: ``b""`` means the stream ended."""
        return self.feed(chunk) if chunk else self.end()

    def feed(self, chunk: bytes) -> list[bytes]:
        """One chunk in (as received, still encoded); the bytes to forward for it out."""
        if not chunk:
            return []
        if not self.strip or self._failed:
            self._read(chunk)
            return [chunk]
        out = bytearray()
        try:
            for piece in self._decoder.decode(chunk):
                out += self._strip_sse(piece)
        except Exception as exc:  # a broken stream must still reach the client, as it came
            self._fail(f"{type(exc).__name__}: {exc}")
            out += self._release_held() + chunk
        return [bytes(out)] if out else []

    def end(self) -> list[bytes]:
        """End of stream: the bytes still held (strip mode only), never ``b""``."""
        if self._ended:
            return []
        self._ended = True
        if self._sse is None or self._failed:
            return []
        last = self._sse.close()
        if last is None:
            return []
        if last.raw.strip():
            self._cut_event = True
            self._problem = self._problem or "stream ended inside an event"
        tail = self._on_sse(last)
        return [tail] if self.strip and tail else []

    def _release_held(self) -> bytes:
        if self._sse is None:
            return b""
        held = self._sse.close()
        return held.raw if held is not None else b""

    def result(self) -> TapResult:
        """The usage seen so far; callable at any time (e.g. after a client disconnect)."""
        return TapResult(
            usage=self._acc.usage(),
            truncated=not self._ended or not self._finished() or self._partial(),
            malformed=self._malformed > 0 or self._failed,
            events=self._events,
            problem=self._problem,
        )

    def _finished(self) -> bool:
        if self.family == providers.OPENAI_CHAT:
            return self._done_marker
        if self._array is not None and not self._array.closed:
            return False
        return self._acc.finished

    def _partial(self) -> bool:
        if self._frames is not None:
            return self._frames.pending > 0
        if self._array is not None:
            return self._array.partial
        return self._cut_event

    def _fail(self, problem: str) -> None:
        self._failed = True
        self._problem = self._problem or problem

    def _read(self, chunk: bytes) -> None:
        if self._failed:
            return
        try:
            for piece in self._decoder.decode(chunk):
                self._parse(piece)
        except Exception as exc:  # never let a parse failure reach mitmproxy
            self._fail(f"{type(exc).__name__}: {exc}")

    def _parse(self, piece: bytes) -> None:
        if self._sse is not None:
            for item in self._sse.feed(piece):
                if isinstance(item, SseEvent):
                    self._on_sse(item)
                else:
                    self._oversized()
        elif self._array is not None:
            before = self._array.oversized
            for element in self._array.feed(piece):
                self._add("", element)
            if self._array.oversized > before:
                self._oversized()
        elif self._frames is not None:
            for headers, payload in self._frames.feed(piece):
                if headers.get(":message-type", "event") != "event":
                    self._problem = self._problem or f"upstream exception {headers.get(':exception-type')}"
                    continue
                self._add(headers.get(":event-type", ""), payload)

    def _oversized(self) -> None:
        self._malformed += 1
        self._problem = self._problem or "an event exceeded the tap's buffer and was skipped"

    def _on_sse(self, event: SseEvent) -> bytes:
        """Meter one SSE event; return the bytes to forward for it (strip mode)."""
        data = event.data
        if not data:
            return event.raw
        if data.strip() == "[DONE]":
            self._done_marker = True
            return event.raw
        payload = self._add(event.event, data)
        if not self.strip or payload is None:
            return event.raw
        if payload.get("choices") == [] and isinstance(payload.get("usage"), dict):
            return b""  # the usage-only chunk the client did not ask for
        if "usage" in payload and payload["usage"] is None:
            return _without_usage_null(event.raw, payload)
        return event.raw

    def _strip_sse(self, piece: bytes) -> bytes:
        assert self._sse is not None
        out = bytearray()
        for item in self._sse.feed(piece):
            if isinstance(item, Skipped):
                self._oversized()
                out += item.raw
            else:
                out += self._on_sse(item)
        return bytes(out)

    def _add(self, kind: str, data: str | bytes) -> dict[str, Any] | None:
        """Parse one event's JSON payload and hand it to the accumulator."""
        self._events += 1
        try:
            payload = json.loads(data)
        except ValueError as exc:
            self._malformed += 1
            self._problem = self._problem or f"event is not JSON: {exc}"
            return None
        if not isinstance(payload, dict):
            self._malformed += 1
            self._problem = self._problem or "event is JSON but not an object"
            return None
        try:
            self._acc.add(kind, payload)
        except ValueError as exc:
            self._malformed += 1
            self._problem = self._problem or str(exc)
        return payload


def _without_usage_null(raw: bytes, payload: dict[str, Any]) -> bytes:
    """``raw`` with its chunk's top-level ``"usage":null`` member removed, or unchanged if that
    cannot be done exactly (verified by re-parsing: every other member must be kept as it was)."""
    text = raw.decode("utf-8", "surrogateescape")
    expected = {k: v for k, v in payload.items() if k != "usage"}
    for pattern in _USAGE_NULL:
        edited, n = pattern.subn("", text, count=1)
        if n != 1:
            continue
        data = "\n".join(
            line[5:].removeprefix(" ") for line in edited.splitlines() if line.startswith("data:")
        )
        try:
            if json.loads(data) == expected:
                return edited.encode("utf-8", "surrogateescape")
        except ValueError:
            continue
    return raw


STREAM_CONTENT_TYPES = ("text/event-stream", "application/vnd.amazon.eventstream")


def is_streamed_response(family: str, path: str, content_type: str | None) -> bool:
    """Whether a response is a stream the tap must read (decided from its headers, at
    ``responseheaders`` time): SSE or AWS event-stream, or Gemini's streamed JSON array.
    Embeddings are never streamed."""
    if family in providers.EMBEDDING_FAMILIES:
        return False
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in STREAM_CONTENT_TYPES:
        return True
    return (
        family in _GEMINI_STREAMS
        and ":streamGenerateContent" in path.split("?", 1)[0]
        and kind.endswith("json")
    )
