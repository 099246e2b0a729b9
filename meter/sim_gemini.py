"""Gemini ``generateContent`` / ``streamGenerateContent`` answers. Pure.

A stream is either SSE (``?alt=sse``: ``data: {...}`` events ended by CRLF CRLF) or, without
``alt=sse``, one JSON array whose elements arrive one by one. Every chunk carries
``usageMetadata`` with the output counted so far; the last chunk has the totals and the
``finishReason``. Code Assist (``envelope``) sends the same answer and chunks, each wrapped as
``{"response": ..., "traceId": ...}``.
"""

from __future__ import annotations

from typing import Any

from meter.sim_plan import Plan
from meter.sim_wire import JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, Reply, base62, compact, json_reply, sse


def usage_metadata(plan: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "promptTokenCount": plan.input_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": plan.input_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": plan.input_tokens}],
    }


def _chunk(plan: Plan, seed: str, text: str, output_so_far: int, finished: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finished:
        candidate["finishReason"] = "MAX_TOKENS" if plan.truncated else "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata(plan, output_so_far),
        "modelVersion": plan.model,
        "responseId": base62("gemini" + seed, 22),
    }


def response(plan: Plan, seed: str) -> dict[str, Any]:
    return _chunk(plan, seed, plan.text, plan.output_tokens, finished=True)


def stream_chunks(plan: Plan, seed: str) -> list[dict[str, Any]]:
    """One chunk per word; an answer of no words is one empty, finished chunk."""
    pieces = plan.pieces or ("",)
    last = len(pieces) - 1
    return [
        _chunk(plan, seed, piece, min(i + 1, plan.output_tokens), finished=i == last)
        for i, piece in enumerate(pieces)
    ]


def reply(plan: Plan, seed: str, *, alt_sse: bool, envelope: bool = False) -> Reply:
    def wrap(doc: dict[str, Any]) -> dict[str, Any]:
        return {"response": doc, "traceId": seed[:16]} if envelope else doc

    if not plan.stream:
        return json_reply(wrap(response(plan, seed)))
    chunks = [wrap(chunk) for chunk in stream_chunks(plan, seed)]
    if alt_sse:
        return Reply(
            200,
            (("content-type", SSE_CONTENT_TYPE),),
            chunks=tuple(sse(c, terminator="\r\n\r\n") for c in chunks),
        )
    array = tuple(
        (b"[" if i == 0 else b",\r\n") + compact(chunk) + (b"]" if i == len(chunks) - 1 else b"")
        for i, chunk in enumerate(chunks)
    )
    return Reply(200, (("content-type", JSON_CONTENT_TYPE),), chunks=array)
