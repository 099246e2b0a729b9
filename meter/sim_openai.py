"""OpenAI Chat Completions and Responses answers (JSON and SSE), as api.openai.com sends them. Pure."""

from __future__ import annotations

from typing import Any

from meter.sim_plan import Plan
from meter.sim_wire import (
    SSE_CONTENT_TYPE,
    Headers,
    Reply,
    base62,
    json_reply,
    openai_request_id,
    padding,
    sse,
)


def _headers(seed: str) -> Headers:
    return (("x-request-id", openai_request_id(seed)), ("openai-version", "2020-10-01"))


def _stream(chunks: tuple[bytes, ...], seed: str) -> Reply:
    return Reply(200, (("content-type", SSE_CONTENT_TYPE), *_headers(seed)), chunks=chunks)


# --- Chat Completions -------------------------------------------------------------------------


def chat_usage(plan: Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_head(plan: Plan, seed: str, now: int, obj: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + base62("chat" + seed, 29),
        "object": obj,
        "created": now,
        "model": plan.model,
        "service_tier": "default",
        "system_fingerprint": "fp_" + seed[:10],
    }


def chat_completion(plan: Plan, seed: str, now: int) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": plan.text, "refusal": None, "annotations": []},
        "logprobs": None,
        "finish_reason": "length" if plan.truncated else "stop",
    }
    return {**_chat_head(plan, seed, now, "chat.completion"), "choices": [choice], "usage": chat_usage(plan)}


def chat_chunks(plan: Plan, seed: str, now: int) -> list[dict[str, Any]]:
    """The chunks of a streamed completion. ``usage`` appears (null, then the usage chunk with
    ``choices: []``) only when the request set ``stream_options.include_usage``."""
    head = _chat_head(plan, seed, now, "chat.completion.chunk")
    deltas: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "assistant", "content": "", "refusal": None}, None)
    ]
    deltas += [({"content": piece}, None) for piece in plan.pieces]
    deltas.append(({}, "length" if plan.truncated else "stop"))
    chunks = []
    for i, (delta, finish) in enumerate(deltas):
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if plan.include_usage:
            chunk["usage"] = None
        chunks.append({**chunk, "obfuscation": padding(i)})
    if plan.include_usage:
        chunks.append({**head, "choices": [], "usage": chat_usage(plan), "obfuscation": ""})
    return chunks


def chat_reply(plan: Plan, seed: str, now: int) -> Reply:
    if not plan.stream:
        return json_reply(chat_completion(plan, seed, now), _headers(seed))
    chunks = (*(sse(chunk) for chunk in chat_chunks(plan, seed, now)), sse("[DONE]"))
    return _stream(chunks, seed)


# --- Responses --------------------------------------------------------------------------------


def responses_usage(plan: Plan) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": plan.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": plan.total_tokens,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(plan: Plan, seed: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "msg_" + seed[:48],
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def response(plan: Plan, seed: str, now: int, *, done: bool) -> dict[str, Any]:
    """The response object: in progress (``done`` false) or finished, with usage."""
    final_status = "incomplete" if plan.truncated else "completed"
    output = [_message_item(plan, seed, final_status, [_text_part(plan.text)])] if done else []
    return {
        "id": "resp_" + seed[:48],
        "object": "response",
        "created_at": now,
        "status": final_status if done else "in_progress",
        "background": False,
        "completed_at": now if done and not plan.truncated else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if done and plan.truncated else None,
        "instructions": None,
        "max_output_tokens": plan.cap,
        "metadata": {},
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": responses_usage(plan) if done else None,
        "user": None,
    }


def response_events(plan: Plan, seed: str, now: int) -> list[dict[str, Any]]:
    """The events of a streamed response, numbered by ``sequence_number``; the last one is
    ``response.completed`` (or ``response.incomplete`` when max_output_tokens cut it short)."""
    item_id = "msg_" + seed[:48]
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    final = response(plan, seed, now, done=True)
    item = final["output"][0]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response(plan, seed, now, done=False)},
        {"type": "response.in_progress", "response": response(plan, seed, now, done=False)},
        {
            "type": "response.output_item.added",
            "item": _message_item(plan, seed, "in_progress", []),
            "output_index": 0,
        },
        {"type": "response.content_part.added", **where, "part": _text_part("")},
    ]
    events += [
        {
            "type": "response.output_text.delta",
            **where,
            "delta": piece,
            "logprobs": [],
            "obfuscation": padding(i),
        }
        for i, piece in enumerate(plan.pieces)
    ]
    events += [
        {"type": "response.output_text.done", **where, "logprobs": [], "text": plan.text},
        {"type": "response.content_part.done", **where, "part": _text_part(plan.text)},
        {"type": "response.output_item.done", "item": item, "output_index": 0},
        {"type": "response.incomplete" if plan.truncated else "response.completed", "response": final},
    ]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def compaction(plan: Plan, seed: str, now: int) -> dict[str, Any]:
    """``POST /responses/compact``: the conversation as one opaque compaction item; usage like a
    response's (the output is the compaction the model wrote)."""
    item = {"id": "cmp_" + seed[:40], "type": "compaction", "encrypted_content": base62("cmp" + seed, 40)}
    return {
        "id": "cmp_" + seed[:48],
        "object": "response.compaction",
        "created_at": now,
        "output": [item],
        "usage": responses_usage(plan),
    }


def responses_reply(plan: Plan, seed: str, now: int, *, compact: bool = False) -> Reply:
    if compact:
        return json_reply(compaction(plan, seed, now), _headers(seed))
    if not plan.stream:
        return json_reply(response(plan, seed, now, done=True), _headers(seed))
    return _stream(tuple(sse(event, event["type"]) for event in response_events(plan, seed, now)), seed)
