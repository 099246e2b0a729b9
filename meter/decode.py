"""Incremental ``Content-Encoding`` decoders for the stream tap.

In a mitmproxy ``flow.response.stream`` callable the chunks are still content-encoded. The tap
decodes a *copy* to read usage and forwards the original bytes, so nothing here ever alters what
the client receives. Output comes in pieces of about ``PIECE_BYTES`` (brotli may give up to twice that) so a small compressed chunk
that inflates hugely (a decompression bomb) is handed to the bounded SSE parser bit by bit rather
than materialised at once. gzip/deflate use zlib, ``br`` the ``brotli`` package and ``zstd``
``backports.zstd`` — both are mitmproxy's own dependencies.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli
from backports import zstd

PIECE_BYTES = 256 * 1024


class DecodeError(ValueError):
    """The stream is not valid in the encoding its headers claim."""


class Decoder(Protocol):
    def decode(self, chunk: bytes) -> Iterator[bytes]: ...

    def finished(self) -> bool:
        """The input so far ends where an encoded stream may end (not truncated mid-frame)."""
        ...


class Identity:
    def decode(self, chunk: bytes) -> Iterator[bytes]:
        if chunk:
            yield chunk

    def finished(self) -> bool:
        return True


class Zlib:
    """gzip (multi-member too) and deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._head = b""
        self._obj: zlib._Decompress | None = zlib.decompressobj(zlib.MAX_WBITS | 16) if self._gzip else None

    def _new(self, first: bytes) -> zlib._Decompress:
        if self._gzip:
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        # RFC 9110 deflate is zlib-wrapped; a raw deflate stream has no valid zlib header
        wrapped = (first[0] & 0x0F) == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        data = self._head + chunk
        self._head = b""
        while data:
            if self._obj is None:
                if not self._gzip and len(data) < 2:
                    self._head = data  # the zlib header is 2 bytes: wait for the second
                    return
                self._obj = self._new(data)
            try:
                piece = self._obj.decompress(data, PIECE_BYTES)
            except zlib.error as exc:
                raise DecodeError(f"bad deflate data: {exc}") from None
            if piece:
                yield piece
            if self._obj.unconsumed_tail:
                data = self._obj.unconsumed_tail
            elif self._obj.eof:
                data = self._obj.unused_data  # another gzip member may follow
                self._obj = None
            else:
                data = b""

    def finished(self) -> bool:
        return self._obj is None and not self._head


class Brotli:
    def __init__(self) -> None:
        self._obj = brotli.Decompressor()

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while True:
            try:
                piece = self._obj.process(data, output_buffer_limit=PIECE_BYTES)
            except brotli.error as exc:
                raise DecodeError(f"bad brotli data: {exc}") from None
            if not piece:
                return
            yield piece  # the limit was maybe reached: ask again with no new input
            data = b""
            if self._obj.is_finished():
                return

    def finished(self) -> bool:
        return bool(self._obj.is_finished())


class Zstd:
    def __init__(self) -> None:
        self._obj = zstd.ZstdDecompressor()

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while True:
            if self._obj.eof:
                data = self._obj.unused_data + data  # a following frame
                if not data:
                    return
                self._obj = zstd.ZstdDecompressor()
            try:
                piece = self._obj.decompress(data, PIECE_BYTES)
            except zstd.ZstdError as exc:
                raise DecodeError(f"bad zstd data: {exc}") from None
            if piece:
                yield piece
            data = b""
            if self._obj.needs_input and not self._obj.eof:
                return

    def finished(self) -> bool:
        return bool(self._obj.eof)


class Chain:
    """Several codings (``Content-Encoding: gzip, br``): undo them in reverse order."""

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((chunk,))
        for decoder in self._decoders:
            pieces = _through(decoder, pieces)
        yield from pieces

    def finished(self) -> bool:
        return all(d.finished() for d in self._decoders)


def _through(decoder: Decoder, pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from decoder.decode(piece)


def _one(coding: str) -> Decoder:
    if coding in ("", "identity"):
        return Identity()
    if coding in ("gzip", "x-gzip", "deflate"):
        return Zlib(coding)
    if coding == "br":
        return Brotli()
    if coding == "zstd":
        return Zstd()
    raise DecodeError(f"unsupported content-encoding {coding!r}")


def decoder_for(content_encoding: str | None) -> Decoder:
    """A fresh decoder for a response's ``Content-Encoding`` header value (None: identity)."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    decoders = [_one(c) for c in reversed(codings) if c != "identity"]
    if not decoders:
        return Identity()
    return decoders[0] if len(decoders) == 1 else Chain(decoders)
