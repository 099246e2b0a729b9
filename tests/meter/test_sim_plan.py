"""The simulator's pure core: the usage rule, max-tokens fields, routing, replay splitting."""

from __future__ import annotations

import json
import math

import pytest

from bbnet.providers import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_INVOKE,
    GEMINI,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
)
from meter.eventstream import EventStreamDecoder, encode_event
from meter.sim_plan import INPUT_OVERHEAD_TOKENS, SimRequestError, input_tokens, parse_body, plan_request
from meter.sim_replay import ReplayBook, ReplayError, recordings, split_frames, split_sse
from meter.sim_route import SimConfig, route


def rule(*texts: str) -> int:
    """The documented rule, restated: overhead + ceil(chars / 4) per counted string."""
    return INPUT_OVERHEAD_TOKENS + sum(math.ceil(len(t) / 4) for t in texts)


def test_input_tokens_count_only_text_bearing_keys_at_any_depth() -> None:
    body = {
        "model": "a-model-name-that-is-not-counted",
        "system": "be brief",
        "messages": [
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": [{"type": "text", "text": "hi!"}]},
        ],
        "tools": [{"name": "lookup", "description": "not counted either"}],
    }
    assert input_tokens(body) == rule("be brief", "hello there", "hi!")


def test_gemini_and_bedrock_shapes_count_their_parts() -> None:
    gemini = {"systemInstruction": {"parts": [{"text": "sys"}]}, "contents": [{"parts": [{"text": "abcde"}]}]}
    bedrock = {"system": [{"text": "sys"}], "messages": [{"role": "user", "content": [{"text": "abcde"}]}]}
    assert input_tokens(gemini) == input_tokens(bedrock) == rule("sys", "abcde")


@pytest.mark.parametrize(
    ("family", "path", "body", "expected_cap"),
    [
        (ANTHROPIC_MESSAGES, "/v1/messages", {"model": "m", "max_tokens": 7, "messages": []}, 7),
        (OPENAI_CHAT, "/v1/chat/completions", {"model": "m", "messages": [], "max_completion_tokens": 6}, 6),
        (OPENAI_CHAT, "/v1/chat/completions", {"model": "m", "messages": [], "max_tokens": 5}, 5),
        (OPENAI_RESPONSES, "/v1/responses", {"model": "m", "max_output_tokens": 4}, 4),
        (
            GEMINI,
            "/v1beta/models/g:generateContent",
            {"contents": [], "generationConfig": {"maxOutputTokens": 3}},
            3,
        ),
        (BEDROCK_CONVERSE, "/model/b/converse", {"messages": [], "inferenceConfig": {"maxTokens": 2}}, 2),
        (BEDROCK_INVOKE, "/model/b/invoke", {"max_tokens": 1, "messages": []}, 1),
    ],
)
def test_each_family_max_tokens_field_caps_output(
    family: str, path: str, body: dict[str, object], expected_cap: int
) -> None:
    plan = plan_request(family, path, body, "path-model" if "/model" in path else None, output_default=16)
    assert plan.output_tokens == expected_cap
    assert plan.truncated
    assert len(plan.text.split()) == expected_cap
    uncapped = plan_request(family, path, body, "path-model", output_default=expected_cap - 1)
    assert uncapped.output_tokens == expected_cap - 1
    assert not uncapped.truncated


def test_output_pieces_join_into_the_text_one_word_each() -> None:
    plan = plan_request(OPENAI_RESPONSES, "/v1/responses", {"model": "m"}, None, output_default=25)
    assert plan.output_tokens == 25
    assert "".join(plan.pieces) == plan.text
    assert [p.strip() for p in plan.pieces] == plan.text.split()


def test_stream_flags() -> None:
    chat = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    assert plan_request(OPENAI_CHAT, "/v1/chat/completions", chat, None, 4).include_usage
    assert plan_request(OPENAI_CHAT, "/v1/chat/completions", chat, None, 4).stream
    stream_path = "/v1beta/models/g:streamGenerateContent"
    assert plan_request(GEMINI, stream_path, {"contents": []}, "g", 4).stream
    assert plan_request(BEDROCK_CONVERSE, "/model/b/converse-stream", {"messages": []}, "b", 4).stream
    assert not plan_request(BEDROCK_CONVERSE, "/model/b/converse", {"messages": []}, "b", 4).stream


@pytest.mark.parametrize(
    ("family", "body", "message"),
    [
        (ANTHROPIC_MESSAGES, {"model": "m", "messages": []}, "max_tokens: field required"),
        (
            ANTHROPIC_MESSAGES,
            {"model": "m", "messages": [], "max_tokens": -1},
            "max_tokens: must be a non-negative",
        ),
        (
            ANTHROPIC_MESSAGES,
            {"model": "m", "messages": [], "max_tokens": True},
            "max_tokens: must be a non-negative",
        ),
        (OPENAI_CHAT, {"messages": []}, "model: field required"),
        (OPENAI_RESPONSES, {"model": ""}, "model: must be a non-empty string"),
    ],
)
def test_bad_requests_name_the_field(family: str, body: dict[str, object], message: str) -> None:
    with pytest.raises(SimRequestError, match=message):
        plan_request(family, "/v1/x", body, None, 16)


@pytest.mark.parametrize(("raw", "message"), [(b"{", "not valid JSON"), (b"[1]", "must be a JSON object")])
def test_bad_bodies(raw: bytes, message: str) -> None:
    with pytest.raises(SimRequestError, match=message):
        parse_body(raw)


def test_routes_come_from_the_catalogue() -> None:
    assert route("/v1/messages") is not None
    found = route("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream")
    assert found is not None
    assert (found.family, found.model) == (BEDROCK_CONVERSE, "anthropic.claude-3-haiku-20240307-v1:0")
    gemini = route("/v1beta/models/gemini-2.0-flash:streamGenerateContent")
    assert gemini is not None
    assert (gemini.family, gemini.model) == (GEMINI, "gemini-2.0-flash")
    assert route("/v2/anything") is None


def test_split_sse_keeps_every_byte_one_event_per_chunk() -> None:
    text = "event: a\ndata: 1\n\nevent: b\ndata: 2\n\ndata: {}\r\n\r\ntrailing"
    chunks = split_sse(text)
    assert b"".join(chunks) == text.encode()
    assert chunks == (b"event: a\ndata: 1\n\n", b"event: b\ndata: 2\n\n", b"data: {}\r\n\r\n", b"trailing")


def test_split_frames_cuts_at_message_boundaries() -> None:
    frames = tuple(encode_event({":event-type": f"e{i}"}, b"x" * i) for i in range(4))
    assert split_frames(b"".join(frames)) == frames
    with pytest.raises(ReplayError, match="ends in the middle"):
        split_frames(b"".join(frames)[:-1])
    decoded = [EventStreamDecoder().feed(frame) for frame in split_frames(b"".join(frames))]
    assert [messages[0][0][":event-type"] for messages in decoded] == ["e0", "e1", "e2", "e3"]


def har(*exchanges: tuple[str, str, str]) -> dict[str, object]:
    return {
        "log": {
            "entries": [
                {
                    "request": {"method": "POST", "url": url, "postData": {"text": body}},
                    "response": {
                        "status": 200,
                        "headers": [],
                        "content": {"mimeType": "application/json", "text": out},
                    },
                }
                for url, body, out in exchanges
            ]
        }
    }


def test_replay_prefers_equal_bodies_then_goes_in_order_wrapping() -> None:
    book = ReplayBook(
        recordings(
            har(
                ("https://h/v1/x?beta=true", json.dumps({"q": 1}), "first"),
                ("https://h/v1/x", json.dumps({"q": 2}), "second"),
                ("https://h/v1/y", "", "other"),
            ),
            "test.har",
        )
    )
    assert len(book) == 3

    def body_of(path: str, request: bytes) -> bytes:
        reply = book.answer("POST", path, request)
        assert reply is not None
        return reply.body

    assert body_of("/v1/x", b'{"q": 2}') == b"second"
    assert body_of("/v1/x", b'{ "q" : 2 }') == b"second"
    assert [body_of("/v1/x", b'{"q": 3}') for _ in range(3)] == [b"first", b"second", b"first"]
    assert body_of("/v1/y", b"") == b"other"
    assert book.answer("GET", "/v1/x", b"") is None


def test_replay_refuses_what_is_not_a_har() -> None:
    with pytest.raises(ReplayError, match=r"x\.har: not a HAR file"):
        recordings({"log": {}}, "x.har")
    with pytest.raises(ReplayError, match="entry 0 is not a usable exchange"):
        recordings({"log": {"entries": [{"request": {}}]}}, "x.har")


def test_negative_options_are_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms must be >= 0, got -1"):
        SimConfig(latency_ms=-1)
    with pytest.raises(ValueError, match="chunk_delay_ms must be >= 0, got -2"):
        SimConfig(chunk_delay_ms=-2)
    with pytest.raises(ValueError, match="output_tokens must be >= 0, got -3"):
        SimConfig(output_tokens=-3)
