"""Embedding answers: OpenAI (and Azure) ``/embeddings``, Gemini ``embedContent`` /
``batchEmbedContents``, Bedrock InvokeModel of Titan and Cohere embedding models. Pure.

Vectors are small and derived from the request's seed. Usage is where each API puts it: OpenAI's
``usage.prompt_tokens``; Titan's ``inputTextTokenCount``; Cohere's only in the
``X-Amzn-Bedrock-Input-Token-Count`` header; the Gemini API sends none (the meter then commits
its estimate, flagged).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

from meter.sim_plan import Plan, SimRequestError
from meter.sim_wire import Headers, Reply, aws_request_id, json_reply, openai_request_id

DIMENSIONS = 8


def vector(seed: str, index: int, dimensions: int = DIMENSIONS) -> list[float]:
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def _inputs(value: object) -> list[object]:
    """OpenAI's ``input``: one string, or a list of strings or of token arrays."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]  # one token array
    if isinstance(value, list) and value:
        return list(value)
    raise SimRequestError("input: must be a non-empty string or array")


def openai_reply(plan: Plan, body: dict[str, Any], seed: str) -> Reply:
    as_base64 = body.get("encoding_format") == "base64"  # the openai SDK asks for this by default
    data = []
    for index, _ in enumerate(_inputs(body.get("input"))):
        values = vector(seed, index, int(body.get("dimensions") or DIMENSIONS))
        encoded: object = (
            base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode() if as_base64 else values
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    usage = {"prompt_tokens": plan.input_tokens, "total_tokens": plan.input_tokens}
    answer = {"object": "list", "data": data, "model": plan.model, "usage": usage}
    return json_reply(answer, (("x-request-id", openai_request_id(seed)),))


def gemini_reply(path: str, body: dict[str, Any], seed: str) -> Reply:
    if path.endswith(":batchEmbedContents"):
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise SimRequestError("requests: field required")
        return json_reply({"embeddings": [{"values": vector(seed, i)} for i in range(len(requests))]})
    if not isinstance(body.get("content"), dict):
        raise SimRequestError("content: field required")
    return json_reply({"embedding": {"values": vector(seed, 0)}})


def bedrock_reply(plan: Plan, body: dict[str, Any], seed: str) -> Reply:
    headers: Headers = (("x-amzn-RequestId", aws_request_id(seed)),)
    if "cohere." in plan.model:
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts:
            raise SimRequestError("texts: field required")
        answer: dict[str, Any] = {
            "embeddings": [vector(seed, i) for i in range(len(texts))],
            "id": aws_request_id("cohere" + seed),
            "response_type": "embeddings_floats",
            "texts": [str(t).lower() for t in texts],
        }
        return json_reply(answer, (*headers, ("X-Amzn-Bedrock-Input-Token-Count", str(plan.input_tokens))))
    if not isinstance(body.get("inputText"), str):
        raise SimRequestError("inputText: field required")
    values = vector(seed, 0, int(body.get("dimensions") or DIMENSIONS))
    titan: dict[str, Any] = {
        "embedding": values,
        "embeddingsByType": {"float": values},
        "inputTextTokenCount": plan.input_tokens,
    }
    return json_reply(titan, headers)
