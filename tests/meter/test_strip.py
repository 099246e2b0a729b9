"""Injected include_usage: the client sees exactly the stream it asked for; the meter sees usage."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from bbnet import providers
from meter.request import ensure_stream_usage
from meter.tap import StreamTap
from tests.meter.recordings import entries, truth

CHAT_STREAMS = [
    (e["response"]["content"]["text"].encode(), t)
    for e, t in zip(entries(), truth(), strict=True)
    if t["stream"] and t["family"] == providers.OPENAI_CHAT
]


def without_injection(stream: bytes) -> bytes:
    """What OpenAI sends when include_usage is not set: no usage-only chunk, no "usage":null."""
    kept = []
    for block in stream.split(b"\n\n"):
        data = block.removeprefix(b"data: ")
        if data and data != b"[DONE]":
            chunk = json.loads(data)
            if chunk["choices"] == [] and chunk["usage"]:
                continue
        kept.append(block.replace(b',"usage":null', b""))
    return b"\n\n".join(kept)


@pytest.mark.parametrize(("stream", "want"), CHAT_STREAMS, ids=[str(i) for i in range(len(CHAT_STREAMS))])
def test_client_sees_the_uninjected_stream_under_any_chunking(stream: bytes, want: dict[str, object]) -> None:
    expected = without_injection(stream)
    assert expected != stream and b'"usage"' not in expected
    rng = random.Random(len(stream))
    for largest in (2, 64, 100_000):
        tap = StreamTap(providers.OPENAI_CHAT, None, strip_injected_usage=True)
        forwarded = bytearray()
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, largest)
            out = tap(stream[pos : pos + step])
            assert b"" not in out
            forwarded += b"".join(out)
            pos += step
            # every complete event is forwarded at once: only the partial one is held
            complete = stream[: stream.rfind(b"\n\n", 0, pos) + 2] if b"\n\n" in stream[:pos] else b""
            assert bytes(forwarded) == without_injection(complete)
        forwarded += b"".join(tap(b""))
        assert bytes(forwarded) == expected
        usage = tap.result().usage
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens, usage.model) == (
            want["input_tokens"],
            want["output_tokens"],
            want["model"],
        )


def test_encoded_stream_is_forwarded_decoded_and_stripped() -> None:
    stream, _ = CHAT_STREAMS[0]
    tap = StreamTap(providers.OPENAI_CHAT, "gzip", strip_injected_usage=True)
    assert tap.forwards_decoded
    wire = gzip.compress(stream)
    forwarded = b"".join(b"".join(tap(wire[i : i + 10])) for i in range(0, len(wire), 10)) + b"".join(
        tap(b"")
    )
    assert forwarded == without_injection(stream)
    assert tap.result().usage is not None


def test_without_stripping_nothing_changes() -> None:
    stream, _ = CHAT_STREAMS[0]
    tap = StreamTap(providers.OPENAI_CHAT, None)
    assert not tap.forwards_decoded
    assert tap(stream) == [stream]
    assert tap(b"") == []


def test_strip_is_only_for_openai_chat() -> None:
    with pytest.raises(ValueError, match="strip_injected_usage applies to openai-chat only"):
        StreamTap(providers.ANTHROPIC_MESSAGES, None, strip_injected_usage=True)


def test_ensure_stream_usage_injects_only_when_missing() -> None:
    body, injected = ensure_stream_usage(b'{"model":"gpt-4o","stream":true,"messages":[]}')
    assert injected and json.loads(body)["stream_options"] == {"include_usage": True}
    asked = b'{"stream":true,"stream_options":{"include_usage":true}}'
    assert ensure_stream_usage(asked) == (asked, False)
    plain = b'{"stream":false}'
    assert ensure_stream_usage(plain) == (plain, False)
    body, injected = ensure_stream_usage(b'{"stream":true,"stream_options":{"include_obfuscation":false}}')
    assert injected
    assert json.loads(body)["stream_options"] == {"include_obfuscation": False, "include_usage": True}
