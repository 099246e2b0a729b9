"""An incremental splitter for a streamed top-level JSON array: ``[{...},{...}, ...]``.

Gemini's ``streamGenerateContent`` without ``alt=sse`` answers with one JSON array whose elements
arrive over time. ``JsonArraySplitter.feed`` returns the raw bytes of each element it completes;
only the current element is buffered, up to ``max_element_bytes`` — past that the element is
passed over and counted in ``oversized``. The splitter only tracks strings, escapes and nesting;
it does not validate JSON (the caller parses each element and flags what does not parse).
"""

from __future__ import annotations

import re

_STRUCTURAL = re.compile(rb'["\[\]{}]')
_IN_STRING = re.compile(rb'["\\]')


class JsonArraySplitter:
    def __init__(self, max_element_bytes: int) -> None:
        self.max_element_bytes = max_element_bytes
        self.oversized = 0
        self.closed = False  # the top-level array's "]" was seen
        self._depth = 0  # 0 before "[", 1 between elements, >1 inside one
        self._in_string = False
        self._escape = False
        self._element = bytearray()
        self._skipping = False  # inside an oversized element: its bytes are not kept

    @property
    def partial(self) -> bool:
        """An element has begun and not ended."""
        return self._depth > 1

    def feed(self, data: bytes) -> list[bytes]:
        done: list[bytes] = []
        pos = 0
        start = 0 if self._depth > 1 else -1  # where the current element begins in ``data``
        while pos < len(data):
            if self._in_string:
                pos = self._string(data, pos)
                continue
            m = _STRUCTURAL.search(data, pos)
            if m is None:
                break
            ch = m.group()
            pos = m.end()
            if ch == b'"':
                self._in_string = self._depth > 0
            elif ch in b"[{":
                self._depth += 1
                if self._depth == 2:
                    start = m.start()
            elif self._depth > 0:
                self._depth -= 1
                if self._depth == 1 and start >= 0:
                    self._keep(data[start:pos])
                    if not self._skipping:
                        done.append(bytes(self._element))
                    self._element.clear()
                    self._skipping = False
                    start = -1
                elif self._depth == 0:
                    self.closed = True
        if start >= 0:
            self._keep(data[start:])
        return done

    def _string(self, data: bytes, pos: int) -> int:
        """Advance through string contents; return the position after what was consumed."""
        if self._escape:
            self._escape = False
            return pos + 1
        m = _IN_STRING.search(data, pos)
        if m is None:
            return len(data)
        if m.group() == b"\\":
            self._escape = True
            return self._string(data, m.end()) if m.end() < len(data) else m.end()
        self._in_string = False
        return m.end()

    def _keep(self, piece: bytes) -> None:
        if self._skipping:
            return
        if len(self._element) + len(piece) > self.max_element_bytes:
            self.oversized += 1
            self._skipping = True
            self._element.clear()
            return
        self._element += piece
