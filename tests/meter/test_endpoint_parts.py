"""The pure parts behind the new endpoints: request decoding, the gate's plan for calls it cannot
cap, the parsers' edge cases the authored fixtures do not show, the refusal's shapes, the sim."""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from collections.abc import Mapping

import brotli
import pytest
from backports import zstd

from bbnet import providers
from bbnet.model import Outcome, PoolView
from bbnet.pools import decide
from meter import errors, gate, request, sim_embed, usage
from meter.sim_plan import input_tokens
from meter.sim_route import SimConfig, answer

BODY = json.dumps({"model": "gpt-5", "input": "hello " * 400}).encode()
CODERS = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress}


@pytest.mark.parametrize("coding", sorted(CODERS))
def test_request_bodies_decode_and_truncated_ones_are_refused(coding: str) -> None:
    encoded = CODERS[coding](BODY)
    assert request.decoded_body(encoded, coding) == BODY
    with pytest.raises(request.RequestError, match=f"does not decode as {coding}"):
        request.decoded_body(encoded[: len(encoded) // 2], coding)


def test_request_decoding_edges() -> None:
    assert request.decoded_body(BODY, None) == request.decoded_body(BODY, " ") == BODY
    assert request.decoded_body(gzip.compress(brotli.compress(BODY)), "br, gzip") == BODY
    with pytest.raises(request.RequestError, match="unsupported content-encoding 'snappy'"):
        request.decoded_body(BODY, "snappy")
    with pytest.raises(request.RequestError, match="inflates past 1000 bytes"):
        request.decoded_body(zstd.compress(BODY), "zstd", limit=1000)


@pytest.mark.parametrize(
    ("family", "shape"),
    [
        (providers.ANTHROPIC_MESSAGES, lambda d: d["error"]["type"] == "invalid_request_error"),
        (providers.OPENAI_RESPONSES, lambda d: d["error"]["type"] == "invalid_request_error"),
        (providers.OPENAI_EMBEDDINGS, lambda d: d["error"]["code"] == "bad_content_encoding"),
        (providers.CODE_ASSIST, lambda d: d["error"]["status"] == "INVALID_ARGUMENT"),
        (providers.GEMINI_EMBED, lambda d: d["error"]["code"] == 400),
        (providers.BEDROCK_EMBED, lambda d: "message" in d),
    ],
)
def test_an_undecodable_body_is_refused_in_the_providers_shape(family: str, shape: object) -> None:
    err = errors.gate_error(
        family, errors.BAD_CONTENT_ENCODING, detail="request body does not decode as zstd"
    )
    doc = json.loads(err.body)
    assert err.status == 400 and doc["bbnet_code"] == "BAD_CONTENT_ENCODING"
    assert callable(shape) and shape(doc)


def pool(limit: int) -> PoolView:
    return PoolView("bottle:b", "*", "tokens", "total", 0.0, limit, 0, 0)


def plan_for(host: str, path: str, body: Mapping[str, object]) -> gate.Plan:
    match = providers.classify(host, path)
    assert match is not None
    return gate.plan(match, path, json.dumps(body).encode())


def test_embeddings_reserve_input_only() -> None:
    p = plan_for("api.openai.com", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi there"})
    assert (p.max_output_tokens, p.cappable, p.stream) == (0, False, False)
    req = gate.reserve_request(p, "k", "b", "a", None, 60)
    assert req.min_output_tokens == 0
    assert decide(req, [pool(p.input_tokens)]).outcome is Outcome.ALLOW
    assert decide(req, [pool(p.input_tokens - 1)]).outcome is Outcome.DENY


def test_the_chatgpt_backend_is_never_degraded() -> None:
    p = plan_for("chatgpt.com", "/backend-api/codex/responses", {"model": "gpt-5-codex", "input": "hi"})
    assert not p.cappable and p.max_output_tokens == request.output_cap("gpt-5-codex")
    req = gate.reserve_request(p, "k", "b", "a", None, 60)
    assert decide(req, [pool(p.input_tokens + p.max_output_tokens - 1)]).outcome is Outcome.DENY
    assert decide(req, [pool(p.input_tokens + p.max_output_tokens)]).outcome is Outcome.ALLOW
    same_on_the_api = plan_for("api.openai.com", "/v1/responses", {"model": "gpt-5-codex", "input": "hi"})
    assert same_on_the_api.cappable


def test_code_assist_caps_and_estimates_inside_its_envelope() -> None:
    inner = {
        "contents": [{"role": "user", "parts": [{"text": "hello " * 50}]}],
        "generationConfig": {"maxOutputTokens": 9},
    }
    p = plan_for(
        "cloudcode-pa.googleapis.com",
        "/v1internal:streamGenerateContent",
        {"model": "gemini-2.5-pro", "request": inner},
    )
    direct = plan_for(
        "generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-pro:streamGenerateContent", inner
    )
    assert (p.model, p.max_output_tokens, p.stream, p.input_tokens) == (
        "gemini-2.5-pro",
        9,
        True,
        direct.input_tokens,
    )
    capped = json.loads(request.apply_cap(providers.CODE_ASSIST, json.dumps({"request": inner}).encode(), 4))
    assert capped["request"]["generationConfig"]["maxOutputTokens"] == 4


def test_embedding_parsers_where_the_fixtures_do_not_reach() -> None:
    vertex_style = {
        "embedding": {"values": [0.1]},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    found = usage.from_json(providers.GEMINI_EMBED, vertex_style, model_hint="gemini-embedding-001")
    assert found == usage.Usage(input_tokens=7, model="gemini-embedding-001")
    titan = {"embedding": [0.1], "inputTextTokenCount": 4}
    header_wins = usage.from_json(
        providers.BEDROCK_EMBED, titan, {"X-Amzn-Bedrock-Input-Token-Count": "5"}, "m"
    )
    assert header_wins == usage.Usage(input_tokens=5, model="m")
    assert usage.from_json(providers.BEDROCK_EMBED, {"embeddings": [[0.1]]}, {}, "m") is None
    total_only = {"model": "e", "usage": {"total_tokens": 3}}
    assert usage.from_json(providers.OPENAI_EMBEDDINGS, total_only) == usage.Usage(input_tokens=3, model="e")


def sim_answer(
    method: str, path: str, body: Mapping[str, object] | None = None, *, anthropic: bool = False
) -> tuple[int, object]:
    raw = json.dumps(body).encode() if body is not None else b""
    result = answer(SimConfig(), method, path, "", raw, anthropic_client=anthropic, seed="ab" * 24, now=0)
    return result.reply.status, json.loads(result.reply.body)


def test_the_simulator_answers_free_endpoints_in_their_shapes() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello world"}]}
    n = input_tokens(body)
    assert sim_answer("POST", "/v1/messages/count_tokens", body) == (200, {"input_tokens": n})
    assert sim_answer("POST", "/v1/responses/input_tokens", body)[1] == {
        "object": "response.input_tokens",
        "input_tokens": n,
    }
    assert sim_answer("POST", "/v1beta/models/g:countTokens", body)[1]["totalTokens"] == n  # type: ignore[index]
    status, listing = sim_answer("GET", "/v1/models", anthropic=True)
    assert status == 200 and listing["has_more"] is False  # type: ignore[index]
    assert sim_answer("GET", "/v1/models/gpt-5")[1]["id"] == "gpt-5"  # type: ignore[index]
    assert sim_answer("GET", "/v1/messages/count_tokens", anthropic=True)[0] == 404
    status, account = sim_answer("POST", "/v1internal:loadCodeAssist", {"metadata": {}})
    assert status == 200 and account["cloudaicompanionProject"] and account["currentTier"]["id"]  # type: ignore[index]
    assert sim_answer("GET", "/v1internal:getCodeAssistGlobalUserSetting")[0] == 200


def test_the_simulator_embeds_and_refuses_what_the_backends_refuse() -> None:
    status, doc = sim_answer(
        "POST", "/v1/embeddings", {"model": "e", "input": ["a", "b"], "encoding_format": "base64"}
    )
    assert status == 200
    first = base64.b64decode(doc["data"][0]["embedding"])  # type: ignore[index]
    assert list(struct.unpack(f"<{sim_embed.DIMENSIONS}f", first)) == pytest.approx(
        sim_embed.vector("ab" * 24, 0)
    )
    assert sim_answer("POST", "/model/cohere.embed-english-v3/invoke", {"input_type": "x"})[0] == 400
    assert sim_answer("POST", "/v1beta/models/e:batchEmbedContents", {"requests": []})[0] == 400
    refused = sim_answer(
        "POST", "/backend-api/codex/responses", {"model": "gpt-5", "input": "x", "max_output_tokens": 5}
    )
    assert refused == (400, {"detail": "Unsupported parameter: max_output_tokens"})
    status, deployed = sim_answer(
        "POST", "/openai/deployments/prod/chat/completions", {"messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 200 and deployed["model"] != "prod"  # type: ignore[index]
