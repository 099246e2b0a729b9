"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), pure.

Bedrock's streaming APIs (``converse-stream``, ``invoke-with-response-stream``) answer with this
framing instead of SSE. One message on the wire::

    total length   u32 BE   (the whole message, these 4 bytes and the trailing CRC included)
    headers length u32 BE
    prelude CRC    u32 BE   (CRC32 of the 8 bytes above)
    headers        name length u8, name (UTF-8), value type u8, value
    payload        total - headers - 16 bytes
    message CRC    u32 BE   (CRC32 of everything before it)

Header values are typed. :func:`encode_event` writes string values only (type 7), which is what
AWS uses for ``:event-type``, ``:content-type`` and ``:message-type``. The decoder reads every
type and renders the non-string ones as text, so a caller sees ``dict[str, str]`` whatever came.
"""

from __future__ import annotations

import base64
import struct
import uuid
import zlib

# botocore's limits; a frame claiming more is corrupt or hostile, not a big event.
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024
_PRELUDE = struct.Struct(">III")
_PRELUDE_LENGTH = _PRELUDE.size  # 12
_CRC_LENGTH = 4
_MIN_MESSAGE_LENGTH = _PRELUDE_LENGTH + _CRC_LENGTH

# Header value types (the AWS event-stream specification).
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)
_FIXED_INT_FORMATS = {_BYTE: ">b", _SHORT: ">h", _INT: ">i", _LONG: ">q", _TIMESTAMP: ">q"}


class EventStreamError(ValueError):
    """The byte stream is not valid event-stream framing; the message says what was wrong."""


def _crc32(data: bytes | memoryview, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def _encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        name_bytes = name.encode()
        value_bytes = value.encode()
        if not 0 < len(name_bytes) <= 255:
            raise EventStreamError(f"event-stream header name must be 1-255 bytes, got {len(name_bytes)}")
        if len(value_bytes) > 0xFFFF:
            raise EventStreamError(f"event-stream header {name!r} value exceeds 65535 bytes")
        out += struct.pack(">B", len(name_bytes)) + name_bytes
        out += struct.pack(">BH", _STRING, len(value_bytes)) + value_bytes
    return bytes(out)


def encode_event(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string-typed headers."""
    header_bytes = _encode_headers(headers)
    if len(header_bytes) > MAX_HEADERS_LENGTH:
        raise EventStreamError(
            f"event-stream headers are {len(header_bytes)} bytes, over {MAX_HEADERS_LENGTH}"
        )
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise EventStreamError(f"event-stream payload is {len(payload)} bytes, over {MAX_PAYLOAD_LENGTH}")
    total = _MIN_MESSAGE_LENGTH + len(header_bytes) + len(payload)
    prelude = struct.pack(">II", total, len(header_bytes))
    head = prelude + struct.pack(">I", _crc32(prelude))
    body = head + header_bytes + payload
    return body + struct.pack(">I", _crc32(body))


def _header_value(kind: int, data: memoryview, pos: int, name: str) -> tuple[str, int]:
    """Decode one typed header value at ``pos``; return it as text and the position after it."""
    if kind == _BOOL_TRUE:
        return "true", pos
    if kind == _BOOL_FALSE:
        return "false", pos
    if kind in _FIXED_INT_FORMATS:
        fmt = _FIXED_INT_FORMATS[kind]
        size = struct.calcsize(fmt)
        _need(data, pos, size, name)
        return str(struct.unpack_from(fmt, data, pos)[0]), pos + size
    if kind in (_BYTES, _STRING):
        _need(data, pos, 2, name)
        (length,) = struct.unpack_from(">H", data, pos)
        pos += 2
        _need(data, pos, length, name)
        raw = bytes(data[pos : pos + length])
        if kind == _BYTES:
            return base64.b64encode(raw).decode(), pos + length
        try:
            return raw.decode(), pos + length
        except UnicodeDecodeError:
            raise EventStreamError(f"event-stream header {name!r} is not valid UTF-8") from None
    if kind == _UUID:
        _need(data, pos, 16, name)
        return str(uuid.UUID(bytes=bytes(data[pos : pos + 16]))), pos + 16
    raise EventStreamError(f"event-stream header {name!r} has unknown value type {kind}")


def _need(data: memoryview, pos: int, size: int, name: str) -> None:
    if pos + size > len(data):
        raise EventStreamError(f"event-stream header {name!r} runs past the end of the headers")


def decode_headers(data: bytes | memoryview) -> dict[str, str]:
    """Parse a message's header block (every value type, rendered as text)."""
    view = memoryview(data)
    headers: dict[str, str] = {}
    pos = 0
    while pos < len(view):
        name_length = view[pos]
        pos += 1
        if name_length == 0 or pos + name_length + 1 > len(view):
            raise EventStreamError("event-stream header name is empty or runs past the end of the headers")
        try:
            name = bytes(view[pos : pos + name_length]).decode()
        except UnicodeDecodeError:
            raise EventStreamError("event-stream header name is not valid UTF-8") from None
        pos += name_length
        kind = view[pos]
        if name in headers:
            raise EventStreamError(f"event-stream header {name!r} appears twice")
        value, pos = _header_value(kind, view, pos + 1, name)
        headers[name] = value
    return headers


class EventStreamDecoder:
    """Incremental decoder: feed bytes as they arrive, split anywhere; get whole messages back.

    Holds at most one partial message. Every prelude and message CRC is checked, and a prelude
    claiming lengths beyond AWS's limits is refused before anything is buffered for it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._expected: int | None = None  # total length of the message in progress, once known

    def feed(self, data: bytes) -> list[tuple[dict[str, str], bytes]]:
        """Add bytes; return the (headers, payload) of every message they complete, in order."""
        self._buffer += data
        messages: list[tuple[dict[str, str], bytes]] = []
        while True:
            if self._expected is None:
                if len(self._buffer) < _PRELUDE_LENGTH:
                    return messages
                self._expected = self._check_prelude()
            if len(self._buffer) < self._expected:
                return messages
            messages.append(self._take_message(self._expected))
            self._expected = None

    @property
    def pending(self) -> int:
        """Bytes held for a message not yet complete (0 at a clean message boundary)."""
        return len(self._buffer)

    def _check_prelude(self) -> int:
        total, headers_length, prelude_crc = _PRELUDE.unpack_from(self._buffer, 0)
        if _crc32(bytes(self._buffer[:8])) != prelude_crc:
            raise EventStreamError("event-stream prelude CRC mismatch")
        if headers_length > MAX_HEADERS_LENGTH:
            raise EventStreamError(
                f"event-stream message claims {headers_length} bytes of headers, over {MAX_HEADERS_LENGTH}"
            )
        payload_length = total - headers_length - _MIN_MESSAGE_LENGTH
        if payload_length < 0:
            raise EventStreamError(
                f"event-stream message length {total} is too short for {headers_length} bytes of headers"
            )
        if payload_length > MAX_PAYLOAD_LENGTH:
            raise EventStreamError(
                f"event-stream message claims a {payload_length}-byte payload, over {MAX_PAYLOAD_LENGTH}"
            )
        return int(total)

    def _take_message(self, total: int) -> tuple[dict[str, str], bytes]:
        view = memoryview(self._buffer)
        try:
            (message_crc,) = struct.unpack_from(">I", view, total - _CRC_LENGTH)
            if _crc32(view[: total - _CRC_LENGTH]) != message_crc:
                raise EventStreamError("event-stream message CRC mismatch")
            (headers_length,) = struct.unpack_from(">I", view, 4)
            headers_end = _PRELUDE_LENGTH + headers_length
            headers = decode_headers(view[_PRELUDE_LENGTH:headers_end])
            payload = bytes(view[headers_end : total - _CRC_LENGTH])
        finally:
            view.release()
        del self._buffer[:total]
        return headers, payload
