"""Bedrock Runtime answers: Converse (JSON and event stream) and InvokeModel with an Anthropic
Messages body (JSON and event stream). Pure.

Streams use the binary ``application/vnd.amazon.eventstream`` framing (:mod:`meter.eventstream`).
Converse events carry JSON payloads named by ``:event-type``; InvokeModel's stream wraps each
Anthropic SSE event, base64-encoded, in a ``chunk`` event. Bedrock pads each payload with a
``p`` field so sizes do not reveal the text.
"""

from __future__ import annotations

import base64
from typing import Any

from meter import sim_anthropic
from meter.eventstream import encode_event
from meter.sim_plan import Plan
from meter.sim_wire import (
    EVENTSTREAM_CONTENT_TYPE,
    Headers,
    Reply,
    aws_request_id,
    base62,
    compact,
    json_reply,
    padding,
)


def _headers(seed: str) -> Headers:
    return (("x-amzn-RequestId", aws_request_id(seed)),)


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_event(headers, compact(payload))


def _stream(frames: tuple[bytes, ...], seed: str) -> Reply:
    return Reply(200, (("content-type", EVENTSTREAM_CONTENT_TYPE), *_headers(seed)), chunks=frames)


def stop_reason(plan: Plan) -> str:
    return "max_tokens" if plan.truncated else "end_turn"


def converse_usage(plan: Plan) -> dict[str, int]:
    return {
        "inputTokens": plan.input_tokens,
        "outputTokens": plan.output_tokens,
        "totalTokens": plan.total_tokens,
    }


def converse_response(plan: Plan, latency_ms: int) -> dict[str, Any]:
    content = [{"text": plan.text}] if plan.output_tokens else []
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(plan),
        "usage": converse_usage(plan),
        "metrics": {"latencyMs": latency_ms},
    }


def converse_events(plan: Plan, latency_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """(event type, payload) of a ConverseStream answer, in order; usage comes last, in metadata."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    events += [
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}) for piece in plan.pieces
    ]
    events += [
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": stop_reason(plan)}),
        ("metadata", {"usage": converse_usage(plan), "metrics": {"latencyMs": latency_ms}}),
    ]
    return [(name, {**payload, "p": padding(i)}) for i, (name, payload) in enumerate(events)]


def converse_reply(plan: Plan, seed: str, latency_ms: int) -> Reply:
    if not plan.stream:
        return json_reply(converse_response(plan, latency_ms), _headers(seed))
    return _stream(tuple(_event(name, payload) for name, payload in converse_events(plan, latency_ms)), seed)


def invoke_message_id(seed: str) -> str:
    return "msg_bdrk_01" + base62("msg" + seed, 22)


def invoke_message(plan: Plan, seed: str) -> dict[str, Any]:
    return {**sim_anthropic.message(plan, seed), "id": invoke_message_id(seed)}


def invoke_chunks(plan: Plan, seed: str, latency_ms: int) -> list[dict[str, Any]]:
    """The Anthropic events of an InvokeModelWithResponseStream answer; Bedrock adds its own
    invocation metrics to the final ``message_stop``."""
    events = sim_anthropic.stream_events(plan, seed)
    events[0]["message"]["id"] = invoke_message_id(seed)
    events[-1]["amazon-bedrock-invocationMetrics"] = {
        "inputTokenCount": plan.input_tokens,
        "outputTokenCount": plan.output_tokens,
        "invocationLatency": latency_ms,
        "firstByteLatency": latency_ms,
    }
    return events


def invoke_reply(plan: Plan, seed: str, latency_ms: int) -> Reply:
    if not plan.stream:
        token_headers = (
            ("X-Amzn-Bedrock-Input-Token-Count", str(plan.input_tokens)),
            ("X-Amzn-Bedrock-Output-Token-Count", str(plan.output_tokens)),
            ("X-Amzn-Bedrock-Invocation-Latency", str(latency_ms)),
        )
        return json_reply(invoke_message(plan, seed), (*_headers(seed), *token_headers))
    frames = tuple(
        _event("chunk", {"bytes": base64.b64encode(compact(event)).decode(), "p": padding(i)})
        for i, event in enumerate(invoke_chunks(plan, seed, latency_ms))
    )
    return _stream(frames, seed)
