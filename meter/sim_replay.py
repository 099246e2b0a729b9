"""``bbnet sim --replay FILE.har``: answer requests with the responses a HAR file recorded.

Matching, for a request with method M, path P (query ignored) and body B:

1. if recorded entries for M+P have a JSON body equal to B, the next of those in turn;
2. otherwise the next entry recorded for M+P, in recorded order;

wrapping around in both cases, so a HAR of N exchanges answers any number of calls. Recorded
streams (SSE, AWS event stream) are sent event by event, with the simulator's chunk delay.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meter.sim_wire import EVENTSTREAM_CONTENT_TYPE, Reply

# Framing headers are the server's business; the recorded values would be wrong for our body.
_DROPPED_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive"}
)
_SSE_EVENT_END = re.compile(r"\r\n\r\n|\n\n")


class ReplayError(ValueError):
    """The HAR file cannot be used; the message names the file and what was wrong."""


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: Any  # the request body as parsed JSON, None when absent or not JSON
    reply: Reply


def split_sse(text: str) -> tuple[bytes, ...]:
    """An SSE body cut after each blank line: one chunk per event."""
    chunks, start = [], 0
    for end in _SSE_EVENT_END.finditer(text):
        chunks.append(text[start : end.end()].encode())
        start = end.end()
    if start < len(text):
        chunks.append(text[start:].encode())
    return tuple(chunks)


def split_frames(data: bytes) -> tuple[bytes, ...]:
    """An event-stream body cut into its messages, by each message's length prelude."""
    frames, pos = [], 0
    while pos + 4 <= len(data):
        (total,) = struct.unpack_from(">I", data, pos)
        if total < 16:
            raise ReplayError(f"recorded event stream has a message of impossible length {total}")
        frames.append(data[pos : pos + total])
        pos += total
    if pos != len(data):
        raise ReplayError("recorded event stream ends in the middle of a message")
    return tuple(frames)


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _reply(response: dict[str, Any]) -> Reply:
    content = response.get("content") or {}
    mime = str(content.get("mimeType") or "")
    text = content.get("text") or ""
    raw = base64.b64decode(text) if content.get("encoding") == "base64" else text.encode()
    headers = tuple(
        (str(h["name"]), str(h["value"]))
        for h in response.get("headers", [])
        if str(h["name"]).lower() not in _DROPPED_HEADERS
    )
    if mime and not any(name.lower() == "content-type" for name, _ in headers):
        headers = (("content-type", mime), *headers)
    status = int(response.get("status", 200))
    if mime.startswith("text/event-stream"):
        return Reply(status, headers, chunks=split_sse(raw.decode()))
    if mime.startswith(EVENTSTREAM_CONTENT_TYPE):
        return Reply(status, headers, chunks=split_frames(raw))
    return Reply(status, headers, raw)


def recordings(har: Any, source: str) -> list[Recorded]:
    """The exchanges of a parsed HAR document."""
    entries = har.get("log", {}).get("entries") if isinstance(har, dict) else None
    if not isinstance(entries, list):
        raise ReplayError(f"{source}: not a HAR file (no log.entries list)")
    out = []
    for index, entry in enumerate(entries):
        try:
            request = entry["request"]
            post = request.get("postData") or {}
            out.append(
                Recorded(
                    method=str(request["method"]).upper(),
                    path=urlsplit(str(request["url"])).path or "/",
                    body=_json_or_none(post.get("text")),
                    reply=_reply(entry["response"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"{source}: entry {index} is not a usable exchange ({exc})") from None
    return out


def load_har(path: str | Path) -> list[Recorded]:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReplayError(f"{path}: not a HAR file (not JSON)") from None
    return recordings(document, str(path))


def _canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


class ReplayBook:
    """The recorded exchanges and, per request kind, which one answers next. Thread-safe."""

    def __init__(self, recorded: list[Recorded]) -> None:
        self._by_route: dict[tuple[str, str], list[Recorded]] = defaultdict(list)
        for item in recorded:
            self._by_route[(item.method, item.path)].append(item)
        self._cursors: dict[tuple[str, ...], int] = defaultdict(int)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_route.values())

    def answer(self, method: str, path: str, body: bytes) -> Reply | None:
        """The recorded reply for this request, or None when nothing was recorded for M+P."""
        candidates = self._by_route.get((method.upper(), path))
        if not candidates:
            return None
        wanted = _json_or_none(body.decode(errors="replace"))
        key: tuple[str, ...] = (method.upper(), path)
        if wanted is not None:
            same = [c for c in candidates if c.body is not None and _canonical(c.body) == _canonical(wanted)]
            if same:
                candidates, key = same, (*key, _canonical(wanted))
        with self._lock:
            turn = self._cursors[key]
            self._cursors[key] = turn + 1
        return candidates[turn % len(candidates)].reply
