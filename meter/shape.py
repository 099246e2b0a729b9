"""Where a request body's conversation sits, so the next turn's body is read without parsing it all.

An agent resends its whole conversation every turn: the next body is the last one with turns
appended (and a few bytes near its end changed: a cache marker moved, a turn id stamped). The gate
needs only the body's top-level settings (model, output cap, stream), and the prefix memory
(meter/prefix.py) already prices the input from the bytes that changed. So for a body that shares
its start with a remembered one, only the part from the last conversation element the two share
is read: the elements from there to the end of the conversation array, and the top-level members
after it (tools, system prompt, settings), parsed with orjson; the members before the array come
from the remembered body, whose bytes they are. Cost: the new turns and the members after the
array, not the conversation.

Nothing is taken on trust. The remembered body was valid JSON (parsed whole, or read this way),
so its bytes up to an element start of its conversation array leave a parser exactly there; the
new body has the same bytes up to that offset (it is inside the prefix the two share), and what
follows is parsed in full: the elements as a JSON array (the array must close where the scan says
it does), the rest as the object's remaining members. So a body read this way is a valid JSON
object, and the members it yields are those a full parse yields (duplicate keys: the last wins, as
for a full parse; a second conversation key sends the body to the full parse instead).

A :class:`Shape` records, for a body: the conversation's key, the offsets where each of its
elements starts (and the offset just inside its ``[``), and the members before and after it,
parsed (those after are parsed again only when their bytes changed). Pure.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from bbnet import providers

#: The top-level key holding each family's conversation, when it is a JSON array.
CONVERSATION_KEYS = {
    providers.ANTHROPIC_MESSAGES: "messages",
    providers.OPENAI_CHAT: "messages",
    providers.OPENAI_RESPONSES: "input",
    providers.GEMINI: "contents",
    providers.BEDROCK_CONVERSE: "messages",
    providers.BEDROCK_INVOKE: "messages",
}
# A JSON token that matters for structure: a whole string (escapes included), or a bracket, comma
# or colon. Numbers, literals and whitespace are skipped (they contain none of these bytes).
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{},:]')
_QUOTE, _COMMA, _COLON = ord('"'), ord(","), ord(":")
_OPEN, _CLOSE, _CLOSE_ARRAY = frozenset(b"[{"), frozenset(b"]}"), ord("]")
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class Shape:
    key: str  # the top-level member holding the conversation array
    starts: tuple[int, ...]  # just inside its "[", then just after each comma between its elements
    head: dict[str, Any]  # the top-level members before it, parsed
    after: dict[str, Any]  # the top-level members after it, parsed
    after_bytes: int  # the bytes after its "]"


@dataclass(frozen=True)
class Read:
    """A body read from a remembered one's shape."""

    doc: dict[str, Any]  # its top-level members; the conversation holds only the elements re-read
    shape: Shape  # the body's own shape, for the turn after it


def _scan_array(body: bytes, at: int) -> tuple[list[int], int] | None:
    """From ``at``, an element start inside an array: where each later element starts (just after
    its comma) and the offset of the array's ``]``; None when the bytes do not close it."""
    starts: list[int] = []
    depth = 0
    for m in _TOKEN.finditer(body, at):
        c = body[m.start()]
        if c in (_QUOTE, _COLON):
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            if depth == 0:
                return starts, m.start()
            depth -= 1
        elif depth == 0:  # a comma between the array's own elements
            starts.append(m.end())
    return None


def _members_after(body: bytes, at: int) -> dict[str, Any]:
    """The top-level members after the conversation array, whose ``]`` ends just before ``at``."""
    rest = body[at:].lstrip(_WHITESPACE)
    if rest[:1] == b"}" and not rest[1:].strip(_WHITESPACE):
        return {}
    if rest[:1] != b",":
        raise ValueError("the conversation array is not followed by a member or the object's end")
    doc = orjson.loads(b"{" + rest[1:])
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    return doc


def of(body: bytes, family: str, doc: dict[str, Any] | None = None) -> Shape | None:
    """The shape of a body known to be a valid JSON object (it was parsed: ``doc``, when at hand,
    spares a scan of the conversation's tokens), or None when its family has no conversation
    array or the body has none where expected."""
    key = CONVERSATION_KEYS.get(family)
    if key is None or body.lstrip(_WHITESPACE)[:1] != b"{":
        return None
    wanted = b'"' + key.encode() + b'"'
    depth, expect_key, tokens = 0, False, _TOKEN.finditer(body)
    for m in tokens:
        c = body[m.start()]
        if c == _QUOTE:
            if depth == 1 and expect_key and body[m.start() : m.end()] == wanted:
                return _shape_at(body, key, m.start(), m.end(), doc)
            expect_key = False
        elif c in _OPEN:
            depth += 1
            expect_key = depth == 1
        elif c in _CLOSE:
            depth -= 1
        elif c == _COMMA:
            expect_key = depth == 1
    return None


def _shape_at(
    body: bytes, key: str, key_start: int, key_end: int, doc: dict[str, Any] | None
) -> Shape | None:
    value = body[key_end:].lstrip(_WHITESPACE)
    if value[:1] != b":" or value[1:].lstrip(_WHITESPACE)[:1] != b"[":
        return None  # the conversation is not an array (a string prompt): nothing to resume
    inside = body.index(b"[", key_end) + 1
    elements = doc.get(key) if doc is not None else None
    found = _compact(body, inside, elements) if isinstance(elements, list) else None
    found = found or _scan_array(body, inside)
    head_bytes = body[:key_start].rstrip(_WHITESPACE).removesuffix(b",") + b"}"
    try:
        head = orjson.loads(head_bytes)
    except orjson.JSONDecodeError:
        return None
    if found is None or not isinstance(head, dict) or key in head:
        return None
    starts, end = found
    try:
        after = _members_after(body, end + 1)
    except ValueError:
        return None
    if key in after:  # a second conversation key: the last one is the conversation
        return None
    return Shape(key, (inside, *starts), head, after, len(body) - end - 1)


def _tail(shape: Shape, body: bytes, at: int, suffix: int) -> tuple[list[Any], list[int], int] | None:
    """The conversation's elements from ``at`` (an element start) on, where each after the first
    starts, and the offset of the array's ``]``; raises ValueError when they do not parse.

    When the shared suffix holds the remembered array's ``]``, that is where the array must close
    (the parse says whether it does), and the elements' offsets are found by serialising them
    again: a body in orjson's own compact form (the CLIs send compact JSON) matches it byte for
    byte; otherwise, and when the end changed, a scan of the elements' tokens finds both."""
    end = len(body) - shape.after_bytes - 1
    if suffix > shape.after_bytes and at <= end and body[end] == _CLOSE_ARRAY:
        with contextlib.suppress(ValueError):  # that "]" closes something else: scan for the end
            elements = orjson.loads(b"[" + body[at : end + 1])
            found = _compact(body, at, elements) if isinstance(elements, list) else None
            if found is not None and found[1] == end:
                return elements, found[0], end
    found = _scan_array(body, at)
    if found is None:
        return None
    later, end = found
    elements = orjson.loads(b"[" + body[at : end + 1])
    return (elements, later, end) if isinstance(elements, list) else None


def _compact(body: bytes, at: int, elements: list[Any]) -> tuple[list[int], int] | None:
    """Where each element after the first starts, and the offset of the ``]`` after the last, if
    the bytes from ``at`` are exactly ``elements`` in orjson's compact form, comma-separated, then
    ``]``; None otherwise."""
    starts, pos = [], at
    for n, element in enumerate(elements):
        if n:
            if body[pos : pos + 1] != b",":
                return None
            pos += 1
            starts.append(pos)
        text = orjson.dumps(element)
        if not body.startswith(text, pos):
            return None
        pos += len(text)
    return (starts, pos) if body[pos : pos + 1] == b"]" else None


def follow(shape: Shape, body: bytes, prefix: int, suffix: int = 0) -> Read | None:
    """``body`` read from ``shape``, the shape of a remembered body whose first ``prefix`` and last
    ``suffix`` bytes it shares; None when it cannot be (the change starts before the conversation,
    or what follows does not parse): the caller parses it whole. The members after the array are
    the remembered ones when their bytes are (the ``suffix`` covers them, from the same ``]``)."""
    i = bisect.bisect_right(shape.starts, prefix) - 1
    if i < 0:
        return None
    at = shape.starts[i]
    try:
        tail = _tail(shape, body, at, suffix)
        if tail is None:
            return None
        elements, later, end = tail
        after_bytes = len(body) - end - 1
        same = after_bytes == shape.after_bytes and suffix >= after_bytes
        rest = shape.after if same else _members_after(body, end + 1)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        return None
    if (i > 0 and not elements) or shape.key in rest:  # "[a,]", or a second conversation key
        return None
    doc = {**shape.head, shape.key: elements, **rest}
    return Read(doc, Shape(shape.key, (*shape.starts[: i + 1], *later), shape.head, rest, after_bytes))
