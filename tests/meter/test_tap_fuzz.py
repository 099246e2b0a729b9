"""Hostile and broken streams: the tap never raises, forwards every byte unchanged, and flags."""

from __future__ import annotations

import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bbnet import providers
from meter import usage
from meter.eventstream import encode_event
from meter.tap import StreamTap

FAMILIES = st.sampled_from(
    [f for f in providers.FAMILIES if f not in providers.EMBEDDING_FAMILIES]
)  # embeddings never stream
ENCODINGS = st.sampled_from([None, "identity", "gzip", "br", "zstd", "deflate", "compress"])
SSE_PIECES = st.sampled_from(
    [
        b"data: ",
        b"event: message_delta\n",
        b'{"type":"message_delta","usage":{"output_tokens":5}}',
        b'{"choices":[],"usage":{"prompt_tokens":3}}',
        b"\n",
        b"\r\n",
        b"\r",
        b"\n\n",
        b"\xff\xfe",
        b"\xe2\x82",
        b"{",
        b"data: [DONE]\n\n",
        b": comment\n",
        b"[",
        b"]",
        b'"',
        b"\\",
    ]
)
STREAMS = st.one_of(st.binary(max_size=512), st.lists(SSE_PIECES, max_size=40).map(b"".join))


def feed_all(tap: StreamTap, data: bytes, cuts: list[int]) -> bytes:
    forwarded = bytearray()
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        chunk = data[start:cut]
        out = tap(chunk) if chunk else []
        assert b"" not in out
        forwarded += b"".join(out)
        start = max(start, cut)
    forwarded += b"".join(tap(b""))
    return bytes(forwarded)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FAMILIES, ENCODINGS, STREAMS, st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_tap_never_raises_and_forwards_unchanged(
    family: str, encoding: str | None, data: bytes, cuts: list[int]
) -> None:
    tap = StreamTap(family, encoding, max_event_bytes=64)
    assert feed_all(tap, data, cuts) == data
    result = tap.result()
    assert result.usage is None or result.usage.input_tokens >= 0
    if encoding == "compress":
        assert result.malformed and result.problem == "unsupported content-encoding 'compress'"


@settings(max_examples=500, deadline=None)
@given(STREAMS, st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_strip_mode_never_raises_and_keeps_ordinary_bytes(data: bytes, cuts: list[int]) -> None:
    tap = StreamTap(providers.OPENAI_CHAT, None, strip_injected_usage=True, max_event_bytes=64)
    forwarded = feed_all(tap, data, cuts)
    if b"usage" not in data:
        assert forwarded == data


def test_truncated_stream_is_flagged_and_keeps_what_it_saw() -> None:
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x",'
        b'"usage":{"input_tokens":10,"output_tokens":1}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":7}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tok'
    )
    tap = StreamTap(providers.ANTHROPIC_MESSAGES, None)
    tap(stream)
    tap(b"")
    result = tap.result()
    assert result.truncated and result.malformed
    assert result.usage == usage.Usage(input_tokens=10, output_tokens=7, model="claude-x")


def test_anthropic_delta_usage_is_the_latest_not_a_sum() -> None:
    deltas = b"".join(
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":%d}}\n\n' % n
        for n in (3, 9, 12)
    )
    start = b'data: {"type":"message_start","message":{"model":"m","usage":{"input_tokens":4,"output_tokens":1}}}\n\n'
    tap = StreamTap(providers.ANTHROPIC_MESSAGES, None)
    tap(start + deltas + b'data: {"type":"message_stop"}\n\n')
    tap(b"")
    result = tap.result()
    assert result.usage is not None and result.usage.output_tokens == 12
    assert not result.truncated


def test_absurd_event_is_dropped_and_flagged_but_forwarded() -> None:
    huge = b"data: " + b"x" * 5000 + b"\n\n"
    tail = b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3},"model":"g"}\n\ndata: [DONE]\n\n'
    tap = StreamTap(providers.OPENAI_CHAT, None, max_event_bytes=1024)
    forwarded = b"".join(b"".join(tap(c)) for c in (huge[:3000], huge[3000:], tail))
    assert forwarded == huge + tail
    tap(b"")
    result = tap.result()
    assert result.malformed and "exceeded" in (result.problem or "")
    assert result.usage == usage.Usage(input_tokens=2, output_tokens=3, model="g")


def test_gemini_sse_and_json_array_forms() -> None:
    meta = {
        "promptTokenCount": 8,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 2,
        "cachedContentTokenCount": 3,
    }
    first = {"candidates": [{"content": {"parts": [{"text": 'a]}\\"['}]}}], "modelVersion": "gemini-2.5-pro"}
    last = {"candidates": [{"finishReason": "STOP"}], "usageMetadata": meta, "modelVersion": "gemini-2.5-pro"}
    want = usage.Usage(
        input_tokens=8, cache_read_tokens=3, output_tokens=7, reasoning_tokens=2, model="gemini-2.5-pro"
    )
    sse = b"".join(b"data: " + json.dumps(x).encode() + b"\r\n\r\n" for x in (first, last))
    array = ("[" + json.dumps(first) + ",\r\n" + json.dumps(last) + "]").encode()
    for content_type, body in (("text/event-stream", sse), ("application/json", array)):
        tap = StreamTap(providers.GEMINI, "gzip", content_type=content_type)
        wire = gzip.compress(body)
        for i in range(len(wire)):
            tap(wire[i : i + 1])
        tap(b"")
        result = tap.result()
        assert result.usage == want and not result.truncated and not result.malformed, content_type


def test_bedrock_converse_stream_and_invoke_stream() -> None:
    converse = encode_event(
        {":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}'
    )
    converse += encode_event(
        {":event-type": "metadata", ":message-type": "event"},
        b'{"usage":{"inputTokens":11,"outputTokens":4,"cacheReadInputTokens":5,"totalTokens":20}}',
    )
    tap = StreamTap(providers.BEDROCK_CONVERSE, None, model_hint="anthropic.claude-3-haiku")
    for i in range(len(converse)):
        tap(converse[i : i + 1])
    tap(b"")
    assert tap.result().usage == usage.Usage(
        input_tokens=16, cache_read_tokens=5, output_tokens=4, model="anthropic.claude-3-haiku"
    )

    import base64

    def chunk(event: dict[str, object]) -> bytes:
        payload = json.dumps({"bytes": base64.b64encode(json.dumps(event).encode()).decode()}).encode()
        return encode_event({":event-type": "chunk", ":message-type": "event"}, payload)

    invoke = chunk({"type": "message_start", "message": {"model": "claude-3", "usage": {"input_tokens": 9}}})
    invoke += chunk(
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 6},
        }
    )
    tap = StreamTap(providers.BEDROCK_INVOKE, None)
    tap(invoke)
    tap(b"")
    result = tap.result()
    assert result.usage == usage.Usage(input_tokens=9, output_tokens=6, model="claude-3")
    assert not result.truncated


def test_corrupt_eventstream_is_flagged_and_forwarded() -> None:
    tap = StreamTap(providers.BEDROCK_CONVERSE, None)
    assert tap(b"\x00\x00\x00\x10" * 8) == [b"\x00\x00\x00\x10" * 8]
    tap(b"")
    assert tap.result().malformed


def test_non_stream_json_bad_inputs() -> None:
    assert usage.from_body(providers.OPENAI_CHAT, b"\xff not json") is None
    assert usage.from_body(providers.OPENAI_CHAT, b'{"usage": "lots"}') is None
    odd = usage.from_body(providers.ANTHROPIC_MESSAGES, b'{"usage":{"input_tokens":-5,"output_tokens":"9"}}')
    assert odd == usage.Usage()
    headers = {"X-Amzn-Bedrock-Input-Token-Count": "12", "X-Amzn-Bedrock-Output-Token-Count": "3"}
    assert usage.from_body(providers.BEDROCK_INVOKE, b"{}", headers, "m") == usage.Usage(
        input_tokens=12, output_tokens=3, model="m"
    )
