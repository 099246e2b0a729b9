"""Request edits (DEGRADE caps, model, streaming), the gate's error shapes, and redaction."""

from __future__ import annotations

import json

import pytest

from bbnet import providers as p
from bbnet.model import PoolView
from meter import request as rq
from meter.errors import BUDGET_CONFIG, BUDGET_DENIED, gate_error, redact, redact_headers


@pytest.mark.parametrize(
    ("family", "body", "field", "value"),
    [
        (p.ANTHROPIC_MESSAGES, {"max_tokens": 100}, "max_tokens", 100),
        (p.OPENAI_CHAT, {"max_completion_tokens": 50, "max_tokens": 70}, "max_completion_tokens", 50),
        (p.OPENAI_CHAT, {"max_tokens": 70}, "max_tokens", 70),
        (p.OPENAI_CHAT, {}, "max_completion_tokens", None),
        (p.OPENAI_RESPONSES, {"max_output_tokens": 9}, "max_output_tokens", 9),
        (p.GEMINI, {"generationConfig": {"maxOutputTokens": 33}}, "generationConfig.maxOutputTokens", 33),
        (p.BEDROCK_CONVERSE, {"inferenceConfig": {"maxTokens": 5}}, "inferenceConfig.maxTokens", 5),
        (p.BEDROCK_INVOKE, {"max_tokens": True}, "max_tokens", None),
    ],
)
def test_max_output_field(family: str, body: dict[str, object], field: str, value: int | None) -> None:
    assert rq.max_output_field(family, body) == (field, value)


def test_openai_compatible_hosts_get_max_tokens() -> None:
    assert rq.max_output_field(p.OPENAI_CHAT, {}, provider="groq") == ("max_tokens", None)


def test_apply_cap_lowers_sets_and_never_raises() -> None:
    lowered = json.loads(rq.apply_cap(p.GEMINI, b'{"generationConfig":{"maxOutputTokens":900,"t":1}}', 100))
    assert lowered["generationConfig"] == {"maxOutputTokens": 100, "t": 1}
    added = json.loads(rq.apply_cap(p.BEDROCK_CONVERSE, b'{"messages":[]}', 64))
    assert added["inferenceConfig"] == {"maxTokens": 64}
    kept = json.loads(rq.apply_cap(p.ANTHROPIC_MESSAGES, b'{"max_tokens":10}', 64))
    assert kept["max_tokens"] == 10
    both = json.loads(rq.apply_cap(p.OPENAI_CHAT, b'{"max_completion_tokens":500,"max_tokens":400}', 64))
    assert (both["max_completion_tokens"], both["max_tokens"]) == (64, 64)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"{nope", "request body is not valid JSON"), (b"[1]", "request body is a JSON list, not an object")],
)
def test_bad_bodies_are_refused_with_one_line(body: bytes, message: str) -> None:
    with pytest.raises(rq.RequestError, match=message):
        rq.apply_cap(p.ANTHROPIC_MESSAGES, body, 10)
    with pytest.raises(rq.RequestError, match="output cap must be at least 1"):
        rq.apply_cap(p.ANTHROPIC_MESSAGES, b"{}", 0)


def test_is_stream_and_model() -> None:
    assert rq.is_stream(p.ANTHROPIC_MESSAGES, "/v1/messages", {"stream": True})
    assert not rq.is_stream(p.OPENAI_CHAT, "/v1/chat/completions", {"stream": "yes"})
    assert rq.is_stream(p.GEMINI, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", {})
    assert rq.is_stream(p.BEDROCK_CONVERSE, "/model/x/converse-stream", {})
    assert not rq.is_stream(p.BEDROCK_INVOKE, "/model/x/invoke", {})
    assert rq.model_of(p.BEDROCK_INVOKE, {}, "anthropic.claude-3-5-sonnet-20240620-v1%3A0") == (
        "anthropic.claude-3-5-sonnet-20240620-v1:0"
    )
    assert rq.model_of(p.OPENAI_CHAT, {"model": "gpt-4o"}) == "gpt-4o"
    assert rq.model_of(p.OPENAI_CHAT, {"model": 3}) is None


def test_output_caps_by_prefix() -> None:
    assert rq.output_cap("claude-sonnet-4-5-20250929") == 64_000
    assert rq.output_cap("us.anthropic.claude-3-5-haiku-20241022-v1:0") == 8_192
    assert rq.output_cap("gpt-4o-mini") == 16_384
    assert rq.output_cap("models/gemini-2.5-flash") == 65_536
    assert rq.output_cap("some-new-model") == rq.DEFAULT_OUTPUT_CAP
    assert rq.output_cap(None) == rq.DEFAULT_OUTPUT_CAP
    assert rq.requested_output(p.ANTHROPIC_MESSAGES, {"max_tokens": 7}, "claude-opus-4") == 7
    assert rq.requested_output(p.OPENAI_CHAT, {}, "gpt-4o") == 16_384


POOL = PoolView("bottle:b1", "anthropic", "tokens", "total", 0.0, limit=1000, used=990, reserved=5)


@pytest.mark.parametrize(
    ("family", "shape"),
    [
        (p.ANTHROPIC_MESSAGES, lambda b: b["error"]["type"] == "rate_limit_error" and b["type"] == "error"),
        (p.OPENAI_CHAT, lambda b: b["error"]["type"] == "rate_limit_exceeded" and "code" in b["error"]),
        (p.OPENAI_RESPONSES, lambda b: "message" in b["error"]),
        (p.GEMINI, lambda b: b["error"]["status"] == "RESOURCE_EXHAUSTED" and b["error"]["code"] == 429),
        (p.BEDROCK_CONVERSE, lambda b: "message" in b),
        (p.BEDROCK_INVOKE, lambda b: "message" in b),
    ],
)
def test_deny_in_each_providers_shape(family: str, shape: object) -> None:
    answer = gate_error(family, BUDGET_DENIED, POOL)
    body = json.loads(answer.body)
    assert answer.status == 429
    assert shape(body)  # type: ignore[operator]
    assert (body["bbnet_code"], body["scope"], body["limit"], body["used"]) == (
        BUDGET_DENIED,
        "bottle:b1",
        1000,
        990,
    )
    if family.startswith("bedrock"):
        assert answer.headers["x-amzn-ErrorType"] == "ThrottlingException"


def test_config_error_is_503() -> None:
    answer = gate_error(p.OPENAI_CHAT, BUDGET_CONFIG, detail="ledger unreachable at postgres://u:pw@db/x")
    body = json.loads(answer.body)
    assert answer.status == 503 and body["bbnet_code"] == BUDGET_CONFIG
    assert "pw" not in body["error"]["message"]
    with pytest.raises(ValueError, match="unknown bbnet error code"):
        gate_error(p.OPENAI_CHAT, "NOPE")


SECRETS = [
    ("authorization: Bearer sk-proj-abcdefghijklmnop", "sk-proj-abcdefghijklmnop"),
    ('{"x-api-key": "sk-ant-api03-secretsecret"}', "sk-ant-api03-secretsecret"),
    ("x-goog-api-key=AIzaSyA1234567890abcdefghijkl", "AIzaSyA1234567890abcdefghijkl"),
    ("GET https://g.example/v1/models?key=AIzaSyZZZZZZZZZZZZZZZZZZZZZZZ&alt=sse", "AIzaSyZZZZ"),
    ("https://alice:hunter2@proxy.example:8080/", "hunter2"),
    (
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=host, Signature=0123456789abcdef0123456789abcdef",
        "0123456789abcdef",
    ),
    ("https://s3.example/o?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIAEXAMPLE%2F2025", "deadbeefcafe"),
    ("https://s3.example/o?X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE", "FwoGZXIvYXdzEXAMPLE"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "[REDACTED]" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    text = "POST https://api.anthropic.com/v1/messages 429 budget exhausted for bottle:b1"
    assert redact(text) == text


def test_redact_headers() -> None:
    headers = {"Authorization": "Bearer x", "X-Api-Key": "k", "content-type": "application/json"}
    assert redact_headers(headers) == [
        ("Authorization", "[REDACTED]"),
        ("X-Api-Key", "[REDACTED]"),
        ("content-type", "application/json"),
    ]


def test_deny_with_room_left_says_what_the_call_needs_and_what_remains() -> None:
    roomy = PoolView("bottle:b1", "anthropic", "tokens", "total", 0.0, limit=12_000, used=4_293, reserved=0)
    body = json.loads(gate_error(p.ANTHROPIC_MESSAGES, BUDGET_DENIED, roomy, needed=9_420).body)
    assert (body["bbnet_reason"], body["needed"], body["remaining"]) == (
        "call_exceeds_remaining",
        9_420,
        7_707,
    )
    message = body["error"]["message"]
    assert message.startswith(
        "bbnet: this call needs ~9,420 tokens, 7,707 remain in bottle:b1 (anthropic, tokens)"
    )
    assert "exhausted for" not in message

    spent = PoolView("bottle:b1", "anthropic", "tokens", "total", 0.0, limit=12_000, used=12_000, reserved=0)
    body = json.loads(gate_error(p.OPENAI_CHAT, BUDGET_DENIED, spent, needed=50).body)
    assert (body["bbnet_reason"], body["remaining"]) == ("exhausted", 0)
    assert body["error"]["message"].startswith("bbnet: budget exhausted for bottle:b1 (anthropic, tokens)")
    unknown = json.loads(gate_error(p.GEMINI, BUDGET_DENIED, POOL).body)  # what it needed is not known
    assert unknown["bbnet_reason"] == "exhausted" and "needed" not in unknown
