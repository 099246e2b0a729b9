"""The pure parts of WebSocket metering: endpoints, client messages, server events, error events,
and the simulator's Realtime usage rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bbnet.providers import OPENAI_REALTIME, OPENAI_RESPONSES, is_provider_host
from meter import errors, estimate, request, sim_realtime, ws
from meter.usage import Usage

RESPONSES = ws.endpoint("api.openai.com", "/v1/responses")
REALTIME = ws.endpoint("api.openai.com", "/v1/realtime?model=gpt-realtime")


def _ep(endpoint: ws.Endpoint | None) -> ws.Endpoint:
    assert endpoint is not None
    return endpoint


def client(
    ep: ws.Endpoint | None, doc: Any, session: ws.Session | None = None
) -> tuple[ws.ClientReading, ws.Session]:
    endpoint = _ep(ep)
    return ws.read_client(endpoint, session or ws.Session(endpoint.model), json.dumps(doc).encode(), True)


def create(ep: ws.Endpoint | None, doc: Any, session: ws.Session | None = None) -> ws.Create:
    reading, _ = client(ep, doc, session)
    assert isinstance(reading, ws.Create), reading
    return reading


# -- endpoints --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "provider", "family", "model"),
    [
        ("api.openai.com", "/v1/responses", "openai", OPENAI_RESPONSES, None),
        ("API.OpenAI.com.", "/v1/responses?x=1", "openai", OPENAI_RESPONSES, None),
        ("api.openai.com", "/v1/realtime?model=gpt-realtime", "openai", OPENAI_REALTIME, "gpt-realtime"),
        ("res-1.openai.azure.com", "/openai/v1/responses", "azure", OPENAI_RESPONSES, None),
        (
            "res-1.openai.azure.com",
            "/openai/responses?api-version=2025-04-01",
            "azure",
            OPENAI_RESPONSES,
            None,
        ),
        (
            "res-1.openai.azure.com",
            "/openai/realtime?deployment=rt&api-key=k",
            "azure",
            OPENAI_REALTIME,
            "rt",
        ),
    ],
)
def test_endpoints(host: str, path: str, provider: str, family: str, model: str | None) -> None:
    ep = _ep(ws.endpoint(host, path))
    assert (ep.match.provider, ep.match.family, ep.model, ep.path) == (
        provider,
        family,
        model,
        path.split("?")[0],
    )
    assert ws.is_metered_ws(host, path)


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("api.openai.com", "/v1/chat/completions"),
        ("api.openai.com.evil.example", "/v1/responses"),
        ("openai.azure.com", "/openai/responses"),
        ("api.anthropic.com", "/v1/messages"),
        ("api.openai.com", "/v1/responses/extra"),
    ],
)
def test_not_metered_sockets(host: str, path: str) -> None:
    assert ws.endpoint(host, path) is None and not ws.is_metered_ws(host, path)


def test_provider_hosts_include_socket_hosts() -> None:
    assert is_provider_host("res.openai.azure.com") and is_provider_host("api.anthropic.com")
    assert not is_provider_host("example.com")


# -- client messages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "is_text", "expected"),
    [
        (b"\x00\x01", False, ws.Forward("binary")),
        (b'{"type": "response.create"', True, "not valid JSON"),
        (b"\xff\xfe", True, "not valid JSON"),
        (b"[1]", True, "JSON list, not an object"),
        (b'{"input": "x"}', True, 'no "type"'),
        (b'{"type": "response.create", "model": 3}', True, "model must be a non-empty string"),
        (b'{"type": "response.cancel"}', True, ws.Forward("response.cancel")),
    ],
)
def test_client_reading(content: bytes, is_text: bool, expected: object) -> None:
    reading, _ = ws.read_client(_ep(RESPONSES), ws.Session(None), content, is_text)
    if isinstance(expected, str):
        assert isinstance(reading, ws.Refuse) and expected in reading.reason
    else:
        assert reading == expected


def test_responses_create_plan() -> None:
    doc = {"type": "response.create", "model": "gpt-5", "input": "hello " * 40, "max_output_tokens": 77,
           "stream_id": "lane-2"}  # fmt: skip
    reading = create(RESPONSES, doc)
    assert reading.plan.input_tokens == estimate.input_tokens(OPENAI_RESPONSES, doc)
    assert (reading.plan.model, reading.plan.max_output_tokens, reading.lane) == ("gpt-5", 77, "lane-2")
    no_cap = create(RESPONSES, {"type": "response.create", "model": "gpt-5", "input": "x"})
    assert no_cap.plan.max_output_tokens == request.output_cap("gpt-5")
    chatgpt = create(
        ws.endpoint("chatgpt.com", "/backend-api/codex/responses"),
        {"type": "response.create", "model": "gpt-5"},
    )
    assert not chatgpt.plan.cappable  # the ChatGPT backend refuses max_output_tokens: admitted whole or not
    warm_up = create(
        RESPONSES, {"type": "response.create", "model": "gpt-5", "input": "x", "generate": False}
    )
    assert (warm_up.plan.max_output_tokens, warm_up.plan.input_tokens) == (0, no_cap.plan.input_tokens)
    assert not warm_up.plan.cappable


def test_responses_previous_response_is_billed_again() -> None:
    finished = ws.Finished(None, Usage(input_tokens=100, output_tokens=20), False, "resp_1")
    session = ws.observe_server(ws.Session(None), OPENAI_RESPONSES, finished)
    doc = {"type": "response.create", "model": "gpt-5", "input": "more", "previous_response_id": "resp_1"}
    alone = create(RESPONSES, {k: v for k, v in doc.items() if k != "previous_response_id"})
    assert create(RESPONSES, doc, session).plan.input_tokens == alone.plan.input_tokens + 120


def test_realtime_session_grows_the_estimate() -> None:
    ep = _ep(REALTIME)
    session = ws.Session(ep.model)
    empty = create(ep, {"type": "response.create"}, session)
    assert (empty.plan.model, empty.plan.max_output_tokens) == (
        "gpt-realtime",
        request.output_cap("gpt-realtime"),
    )
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi " * 100}]}
    for doc in (
        {"type": "session.update", "session": {"max_output_tokens": 300, "instructions": "Be brief."}},
        {"type": "conversation.item.create", "item": item},
        {"type": "input_audio_buffer.append", "audio": "A" * (4 * ws.AUDIO_BYTES_PER_TOKEN)},  # 3 tokens
    ):
        reading, session = client(ep, doc, session)
        assert isinstance(reading, ws.Forward)
    assert session.audio_bytes == 3 * ws.AUDIO_BYTES_PER_TOKEN
    grown = create(ep, {"type": "response.create", "event_id": "e1"}, session)
    assert grown.plan.max_output_tokens == 300 and grown.event_id == "e1"
    assert grown.plan.input_tokens == empty.plan.input_tokens + session.realtime_input
    assert session.realtime_input > 3 + 100 * 3 // 4
    out_of_band = create(ep, {"type": "response.create", "response": {"conversation": "none", "max_output_tokens": 9}},
                         session)  # fmt: skip
    assert (out_of_band.plan.input_tokens, out_of_band.plan.max_output_tokens) == (empty.plan.input_tokens, 9)
    infinite = create(ep, {"type": "response.create", "response": {"max_output_tokens": "inf"}}, session)
    assert infinite.plan.max_output_tokens == 300
    reading, _ = client(ep, {"type": "response.create", "response": [1]}, session)
    assert isinstance(reading, ws.Refuse)


def test_degrade_lowers_never_raises() -> None:
    responses = create(
        RESPONSES, {"type": "response.create", "model": "m", "input": "x", "max_output_tokens": 50}
    )
    assert json.loads(ws.degrade(responses, 7))["max_output_tokens"] == 7
    assert json.loads(ws.degrade(responses, 70))["max_output_tokens"] == 50
    realtime = create(REALTIME, {"type": "response.create", "response": {"instructions": "x"}})
    lowered = json.loads(ws.degrade(realtime, 5))
    assert lowered == {"type": "response.create", "response": {"instructions": "x", "max_output_tokens": 5}}


# -- server events ----------------------------------------------------------------------------------


def server(family: str, doc: Any) -> ws.ServerReading:
    return ws.read_server(family, json.dumps(doc).encode(), True, "hint")


def test_server_events() -> None:
    usage = {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 9,
             "output_tokens_details": {"reasoning_tokens": 4}}  # fmt: skip
    done = server(OPENAI_RESPONSES, {"type": "response.completed", "stream_id": "l",
                                     "response": {"id": "r1", "model": "gpt-5", "usage": usage}})  # fmt: skip
    assert done == ws.Finished("l", Usage(30, 0, 10, 9, 4, "gpt-5"), False, "r1")
    failed = server(OPENAI_RESPONSES, {"type": "response.failed", "response": {"usage": None}})
    assert failed == ws.Finished(None, None, True, None)
    assert server(OPENAI_RESPONSES, {"type": "response.output_text.delta", "delta": "usage"}) is None
    assert server(OPENAI_RESPONSES, {"type": "response.created", "response": {}}) == ws.Started(None)
    assert server(OPENAI_RESPONSES, {"response": {}, "type": "response.created"}) == ws.Started(
        None
    )  # type not first
    assert ws.read_server(OPENAI_RESPONSES, b"not json", True, None) is None
    # the Realtime API writes event_id first: still sniffed without parsing (the body is not JSON)
    assert (
        ws.read_server(OPENAI_REALTIME, b'{"event_id":"e1","type":"response.output_audio.delta",', True, None)
        is None
    )
    assert ws.read_server(
        OPENAI_REALTIME, b'{"event_id":"e1","type":"response.created"}', True, None
    ) == ws.Started(None)
    assert ws.read_server(OPENAI_RESPONSES, b'{"type":"response.completed"}', False, None) is None


def test_realtime_server_events() -> None:
    usage = {"input_tokens": 50, "output_tokens": 40, "input_token_details": {"cached_tokens": 20, "audio_tokens": 5},
             "output_token_details": {"text_tokens": 10, "audio_tokens": 30}}  # fmt: skip
    done = server(
        OPENAI_REALTIME, {"type": "response.done", "response": {"status": "completed", "usage": usage}}
    )
    assert done == ws.Finished(
        None, Usage(input_tokens=50, cache_read_tokens=20, output_tokens=40, model="hint"), False
    )
    cancelled = server(OPENAI_REALTIME, {"type": "response.done", "response": {"status": "cancelled"}})
    assert cancelled == ws.Finished(None, None, True)
    error = server(OPENAI_REALTIME, {"type": "error", "error": {"event_id": "evt_9", "message": "no"}})
    assert error == ws.ServerError(None, "evt_9")
    info = server(OPENAI_REALTIME, {"type": "session.created", "session": {"model": "gpt-realtime-mini"}})
    session = ws.observe_server(ws.Session("x"), OPENAI_REALTIME, info)
    assert session.model == "gpt-realtime-mini"
    assert ws.observe_server(session, OPENAI_REALTIME, done).context_tokens == 40


@given(st.binary(max_size=300), st.booleans())
def test_readers_never_raise(content: bytes, is_text: bool) -> None:
    for ep in (_ep(RESPONSES), _ep(REALTIME)):
        ws.read_client(ep, ws.Session(None), content, is_text)
        ws.read_server(ep.match.family, content, is_text, None)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=12), kids, max_size=4)),
       st.sampled_from(["response.create", "session.update", "conversation.item.create", "input_audio_buffer.append",
                        "response.completed", "response.done", "error"]))  # fmt: skip
def test_typed_garbage_never_raises(value: Any, kind: str) -> None:
    doc = {"type": kind, "response": value, "session": value, "item": value, "audio": value, "error": value,
           "max_output_tokens": value, "model": value if isinstance(value, str) else "m"}  # fmt: skip
    content = json.dumps(doc).encode()
    for ep in (_ep(RESPONSES), _ep(REALTIME)):
        reading, _ = ws.read_client(ep, ws.Session(None), content, True)
        if isinstance(reading, ws.Create):
            ws.degrade(reading, 1)
        ws.read_server(ep.match.family, content, True, None)


# -- error events -----------------------------------------------------------------------------------


def test_socket_error_shapes() -> None:
    responses = json.loads(errors.socket_error(OPENAI_RESPONSES, errors.BUDGET_DENIED, None, "why"))
    assert (responses["type"], responses["status"], responses["error"]["code"], responses["bbnet_code"]) == (
        "error", 429, "budget_denied", "BUDGET_DENIED")  # fmt: skip
    realtime = json.loads(
        errors.socket_error(OPENAI_REALTIME, errors.BAD_MESSAGE, None, "bad sk-abcdefghijkl", "e1")
    )
    assert (realtime["error"]["event_id"], realtime["error"]["type"]) == ("e1", "invalid_request_error")
    assert "sk-abcdefghijkl" not in realtime["error"]["message"]
    with pytest.raises(ValueError, match="unknown bbnet error code"):
        errors.socket_error(OPENAI_RESPONSES, "NOPE")


# -- the simulator's Realtime rule --------------------------------------------------------------


def test_sim_realtime_usage_rule() -> None:
    conv = sim_realtime.Conversation("gpt-realtime")
    conv = sim_realtime.observe(conv, {"type": "session.update", "session": {"output_modalities": ["audio"]}})
    conv = sim_realtime.observe(conv, {"type": "input_audio_buffer.append",
                                       "audio": "A" * (8 * sim_realtime.AUDIO_BYTES_PER_TOKEN // 3)})  # fmt: skip
    first = sim_realtime.respond(conv, {"type": "response.create", "response": {"max_output_tokens": 8}}, 16)
    details = first.usage["input_token_details"]
    assert (details["audio_tokens"], details["cached_tokens"]) == (2, 0)
    assert first.usage["output_token_details"] == {"text_tokens": 2, "audio_tokens": 6}
    assert first.usage["output_tokens"] == first.plan.output_tokens == 8
    second = sim_realtime.respond(first.conversation, {"type": "response.create"}, 16)
    assert second.usage["input_token_details"]["cached_tokens"] == first.usage["input_tokens"]
    assert (
        second.usage["input_tokens"] == first.usage["input_tokens"] + 8
    )  # the answer joined the conversation
    assert not conv.server_vad
    on = {
        "type": "session.update",
        "session": {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}},
    }
    vad = sim_realtime.observe(conv, on)
    assert vad.server_vad and sim_realtime.observe(vad, {"type": "session.update", "session": {}}).server_vad
    assert not sim_realtime.observe(
        vad, {"type": "session.update", "session": {"turn_detection": None}}
    ).server_vad
    with pytest.raises(sim_realtime.SimRequestError):
        sim_realtime.respond(conv, {"type": "response.create", "response": {"max_output_tokens": 0}}, 16)
