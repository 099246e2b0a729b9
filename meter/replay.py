"""Meter recorded exchanges (a HAR file or a mitmproxy flow dump) through the live meter's code.

Each entry is classified from its *original* host and path, then metered exactly as the addon
meters a live flow: a streamed answer goes through a :class:`~meter.tap.StreamTap` fed in chunks
(``chunk_size`` bytes, as if they came off the wire), a JSON answer through
:func:`meter.usage.from_body`; an answer without usage falls back to the input estimate, flagged.
Files are read with mitmproxy's own reader (``mitmproxy.io.FlowReader``), which accepts both HAR
and its native flow dumps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bbnet import providers
from bbnet.ledger import Ledger
from bbnet.model import UsageRecord
from meter import estimate, request
from meter.tap import StreamTap, is_streamed_response
from meter.usage import Usage, from_body

if TYPE_CHECKING:  # mitmproxy is imported when a file is read: the CLI starts faster without it
    from mitmproxy import http

DEFAULT_CHUNK_SIZE = 1024
ROW_FIELDS = (
    "index",
    "metered",
    "provider",
    "family",
    "model",
    "input_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "output_tokens",
    "reasoning_tokens",
    "estimated",
)


class ReplayError(Exception):
    """The file cannot be replayed; the message names the file and what was wrong."""


@dataclass(frozen=True)
class MeteredCall:
    index: int
    provider: str
    family: str
    host: str
    path: str
    status: int | None
    stream: bool
    usage: Usage
    estimated: bool

    def row(self) -> dict[str, object]:
        u = self.usage
        return {
            "index": self.index,
            "metered": True,
            "provider": self.provider,
            "family": self.family,
            "model": u.model,
            "input_tokens": u.input_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "estimated": self.estimated,
        }


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _model_hint(family: str, body: bytes, model_from_path: str | None) -> str | None:
    try:
        doc = request.parse_body(body)
    except request.RequestError:
        doc = {}
    return request.model_of(family, doc, model_from_path)


def meter_flow(index: int, flow: http.HTTPFlow, chunk_size: int = DEFAULT_CHUNK_SIZE) -> MeteredCall | None:
    """Meter one recorded flow; None when it is not a billed LLM call (or has no response)."""
    host = flow.request.pretty_host
    path = flow.request.path
    match = providers.classify(host, path)
    if match is None or match.free or flow.response is None:
        return None
    body = flow.request.raw_content or b""
    model = _model_hint(match.family, body, match.model_from_path)
    response = flow.response
    stream = is_streamed_response(match.family, path, response.headers.get("content-type"))
    found: Usage | None
    if stream:
        tap = StreamTap(
            match.family,
            response.headers.get("content-encoding"),
            content_type=response.headers.get("content-type"),
            model_hint=model,
        )
        for chunk in _chunks(response.raw_content or b"", chunk_size):
            tap(chunk)
        tap(b"")
        found = tap.result().usage
    else:
        found = from_body(match.family, response.get_content(strict=False) or b"", response.headers, model)
    usage = found if found is not None else estimate.fallback_usage(match.family, body, model)
    return MeteredCall(
        index=index,
        provider=match.provider,
        family=match.family,
        host=host,
        path=path.split("?", 1)[0],
        status=response.status_code,
        stream=stream,
        usage=usage,
        estimated=found is None,
    )


def read_flows(path: Path) -> Iterator[http.HTTPFlow | None]:
    """Every flow of a HAR file or mitmproxy dump, in order (None for non-HTTP flows)."""
    from mitmproxy import exceptions, http
    from mitmproxy.io import FlowReader

    try:
        with path.open("rb") as fo:
            for flow in FlowReader(fo).stream():
                yield flow if isinstance(flow, http.HTTPFlow) else None
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (exceptions.FlowReadException, KeyError, ValueError) as exc:
        raise ReplayError(f"{path} is not a HAR file or mitmproxy flow dump: {exc}") from None


def replay(path: Path, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[int, MeteredCall | None]]:
    """(index, metered call or None) for every entry of the file, in order."""
    if chunk_size < 1:
        raise ReplayError(f"chunk size must be at least 1 byte, got {chunk_size}")
    for index, flow in enumerate(read_flows(path)):
        yield index, (meter_flow(index, flow, chunk_size) if flow is not None else None)


def entry_key(file_digest: str, index: int) -> str:
    """The idempotency key of a replayed entry: the same file and entry always give the same key."""
    return f"replay:{file_digest[:16]}:{index}"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fo:
        for block in iter(lambda: fo.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(ledger: Ledger, call: MeteredCall, key: str, bottle: str, agent: str | None) -> bool:
    """Backfill one call's usage into the ledger; False if that key was already recorded."""
    u = call.usage
    result = ledger.commit(
        key,
        UsageRecord(
            bottle=bottle,
            agent=agent or call.provider,
            provider=call.provider,
            model=u.model,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cache_read_tokens=u.cache_read_tokens,
            reasoning_tokens=u.reasoning_tokens,
            family=call.family,
            host=call.host,
            path=call.path,
            estimated=call.estimated,
            stream=call.stream,
            status=call.status,
        ),
    )
    return result.recorded
