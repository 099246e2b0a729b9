"""An incremental Server-Sent Events parser with a bounded buffer.

``SseParser.feed(bytes)`` returns the events completed by those bytes. Only the one partial event
is buffered, up to ``max_event_bytes``; an event that grows past that is passed over (returned as
:class:`Skipped` pieces, raw) and counted in ``oversized``, so a hostile or broken upstream cannot
make the meter buffer without bound. Events may be split anywhere: inside a ``\\r\\n`` pair,
inside a UTF-8 sequence, inside a field name. Lines end with ``\\r\\n``, ``\\n`` or ``\\r`` (the
SSE spec); invalid UTF-8 is decoded with replacement characters, never raised.

Every byte fed comes back exactly once, in order, as the ``raw`` of an :class:`SseEvent` or a
:class:`Skipped` piece, so a caller that forwards ``raw`` and drops one event forwards exactly
the stream minus that event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024  # a Responses `response.completed` can be several MB

_TERMINATOR = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # the `event:` field, "" when absent (the spec's default type is "message")
    data: str  # `data:` lines joined by "\n"; "" for a blank line or a comment-only event
    raw: bytes  # the exact bytes of the event, its terminating blank line included


@dataclass(frozen=True, slots=True)
class Skipped:
    raw: bytes  # part of an oversized event, passed over unparsed


def parse_event(raw: bytes) -> SseEvent:
    """Parse the field lines of one complete event (``raw`` ends with its blank line)."""
    event = ""
    data: list[str] = []
    for line in _TERMINATOR.split(raw):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return SseEvent(event, "\n".join(data), raw)


class SseParser:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes < 2:
            raise ValueError(f"max_event_bytes must be at least 2, got {max_event_bytes}")
        self.max_event_bytes = max_event_bytes
        self.oversized = 0  # events passed over because they outgrew the buffer
        self._buf = bytearray()  # the partial event (normal mode)
        self._scan = 0  # where the next terminator search starts in _buf
        self._line_start = 0  # offset in _buf of the line being read
        self._skipping = False  # inside an oversized event: nothing is buffered
        self._at_line_start = True  # skipping mode: the last byte seen ended a line
        self._cr_pending = False  # skipping mode: the last byte seen was "\r" (a "\n" may follow)

    @property
    def buffered(self) -> int:
        """Bytes held for the partial event (at most max_event_bytes + 1)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[SseEvent | Skipped]:
        out: list[SseEvent | Skipped] = []
        while data:
            if self._skipping:
                data = self._skip(data, out)
            elif self._cr_pending:
                # an oversized event ended on "\r": a "\n" right after it belongs to it
                self._cr_pending = False
                if data.startswith(b"\n"):
                    out.append(Skipped(b"\n"))
                    data = data[1:]
            else:
                data = self._parse(data, out)
        return out

    def close(self) -> SseEvent | None:
        """End of stream: the unterminated last bytes as an event (parsed leniently), or None.

        The SSE spec discards an unterminated event; a meter prefers to read it and let the caller
        flag the stream as truncated.
        """
        raw = bytes(self._buf)
        self._buf.clear()
        self._scan = self._line_start = 0
        self._skipping = False
        return parse_event(raw) if raw else None

    def _parse(self, data: bytes, out: list[SseEvent | Skipped]) -> bytes:
        buf = self._buf
        buf += data
        consumed = 0
        pos = self._scan
        while True:
            m = _TERMINATOR.search(buf, pos)
            if m is None:
                pos = len(buf)
                break
            if m.group() == b"\r" and m.end() == len(buf):
                break  # a "\n" may follow in the next chunk: decide then
            if m.start() == self._line_start and self._line_start > consumed:
                out.append(parse_event(bytes(buf[consumed : m.end()])))
                consumed = m.end()
            elif m.start() == self._line_start == consumed:
                # a blank line with no event before it: pass its bytes on as an empty event
                out.append(SseEvent("", "", bytes(buf[consumed : m.end()])))
                consumed = m.end()
            pos = self._line_start = m.end()
        del buf[:consumed]
        self._scan = pos - consumed
        self._line_start -= consumed
        blank_line_pending = buf.endswith(b"\r") and self._line_start == len(buf) - 1
        if len(buf) > self.max_event_bytes and not blank_line_pending:
            return self._start_skipping(out)
        return b""

    def _start_skipping(self, out: list[SseEvent | Skipped]) -> bytes:
        self.oversized += 1
        out.append(Skipped(bytes(self._buf)))
        self._at_line_start = self._line_start == len(self._buf)
        self._cr_pending = self._buf.endswith(b"\r")
        if self._cr_pending:
            self._at_line_start = True
        self._buf.clear()
        self._scan = self._line_start = 0
        self._skipping = True
        return b""

    def _skip(self, data: bytes, out: list[SseEvent | Skipped]) -> bytes:
        """Pass over an oversized event's bytes until its blank line; return what follows it."""
        pos = 0
        if self._cr_pending:
            self._cr_pending = False
            if data.startswith(b"\n"):
                pos = 1
        while True:
            m = _TERMINATOR.search(data, pos)
            if m is None:
                if pos < len(data):
                    self._at_line_start = False
                out.append(Skipped(data))
                return b""
            if m.start() == pos and self._at_line_start:
                end = m.end()
                self._cr_pending = m.group() == b"\r" and end == len(data)
                out.append(Skipped(data[:end]))
                self._skipping = False
                self._at_line_start = True
                return data[end:]
            self._at_line_start = True
            self._cr_pending = m.group() == b"\r" and m.end() == len(data)
            pos = m.end()
