"""Anthropic Messages answers (JSON and SSE), as api.anthropic.com sends them. Pure."""

from __future__ import annotations

from typing import Any

from meter.sim_plan import Plan
from meter.sim_wire import SSE_CONTENT_TYPE, Reply, anthropic_request_id, base62, json_reply, sse


def message_id(seed: str) -> str:
    return "msg_01" + base62("msg" + seed, 22)


def stop_reason(plan: Plan) -> str:
    return "max_tokens" if plan.truncated else "end_turn"


def usage(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(plan: Plan, seed: str) -> dict[str, Any]:
    """The whole message, as the JSON answer (and Bedrock's invoke) carries it."""
    content = [{"type": "text", "text": plan.text}] if plan.output_tokens else []
    return {
        "model": plan.model,
        "id": message_id(seed),
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason(plan),
        "stop_sequence": None,
        "usage": usage(plan, plan.output_tokens),
    }


def stream_events(plan: Plan, seed: str) -> list[dict[str, Any]]:
    """The events of a streamed message, in order; ``message_delta`` usage is cumulative."""
    start = {**message(plan, seed), "content": [], "stop_reason": None, "usage": usage(plan, 1)}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in plan.pieces
    ]
    final_usage = {
        "input_tokens": plan.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": plan.output_tokens,
    }
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(plan), "stop_sequence": None},
            "usage": final_usage,
        },
        {"type": "message_stop"},
    ]
    return events


def reply(plan: Plan, seed: str) -> Reply:
    headers = (("request-id", anthropic_request_id(seed)),)
    if not plan.stream:
        return json_reply(message(plan, seed), headers)
    chunks = tuple(sse(event, event["type"]) for event in stream_events(plan, seed))
    stream_headers = (("content-type", SSE_CONTENT_TYPE), ("cache-control", "no-cache"), *headers)
    return Reply(200, stream_headers, chunks=chunks)
