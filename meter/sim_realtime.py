"""The Realtime API's answers (``/v1/realtime``), decided from the session's events alone. Pure.

The session is the conversation: ``conversation.item.create`` adds text, ``input_audio_buffer.append``
adds audio, ``session.update`` sets instructions, the output cap and modalities. The usage rule of
each ``response.create``, so a test can predict it:

* input text tokens = ``INPUT_OVERHEAD_TOKENS`` + the simulator's text rule (:mod:`meter.sim_plan`)
  over the conversation items, the session's and the response's instructions and input, plus every
  earlier answer's text tokens; input audio tokens = appended audio bytes // ``AUDIO_BYTES_PER_TOKEN``
  plus every earlier answer's audio tokens;
* cached tokens = the previous response's input tokens (the conversation prefix), text first;
* output tokens = min(cap, the simulator's default): all text, one word each; or, when ``"audio"``
  is among the output modalities, that many // (1 + ``AUDIO_TOKENS_PER_WORD``) words (at least one)
  each spoken as ``AUDIO_TOKENS_PER_WORD`` audio tokens.

With turn detection on (``session.update`` sets ``turn_detection``), an ``input_audio_buffer.commit``
makes the server start a response on its own, as if ``response.create`` came with no parameters
(the real server detects the end of speech itself; the commit stands in for it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bbnet.providers import OPENAI_REALTIME
from meter.sim_plan import Plan, SimRequestError, input_tokens

AUDIO_BYTES_PER_TOKEN = 4_800  # pcm16 mono at 24 kHz: 100 ms of audio a token
AUDIO_TOKENS_PER_WORD = 3


@dataclass(frozen=True)
class Conversation:
    model: str
    text_tokens: int = 0  # items and earlier answers
    audio_tokens: int = 0  # earlier answers' audio
    audio_bytes: int = 0
    instructions: str = ""
    cap: int | None = None
    modalities: tuple[str, ...] = ("text",)
    previous_input: int = 0
    turns: int = 0
    server_vad: bool = False  # turn detection on: the server starts a response when audio is committed
    items: tuple[dict[str, Any], ...] = ()


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _turn_detection(session: dict[str, Any], current: bool) -> bool:
    """Whether turn detection is on after a session.update (GA: ``audio.input.turn_detection``;
    beta: ``turn_detection``); a null turns it off, absence keeps it."""
    audio_input = _object(_object(session, "audio"), "input")
    holder = audio_input if "turn_detection" in audio_input else session
    if "turn_detection" not in holder:
        return current
    return isinstance(holder["turn_detection"], dict)


def observe(conv: Conversation, doc: dict[str, Any]) -> Conversation:
    """The conversation after a client event that makes no response."""
    kind = doc.get("type")
    if kind == "session.update":
        session = _object(doc, "session")
        cap = session.get("max_output_tokens", conv.cap)
        modalities = session.get("output_modalities") or session.get("modalities") or conv.modalities
        return replace(conv, instructions=str(session.get("instructions", conv.instructions)),
                       cap=cap if isinstance(cap, int) else None, modalities=tuple(modalities),
                       server_vad=_turn_detection(session, conv.server_vad))  # fmt: skip
    if kind == "conversation.item.create":
        item = _object(doc, "item")
        return replace(conv, items=(*conv.items, item))
    if kind == "input_audio_buffer.append":
        audio = doc.get("audio")
        return replace(
            conv, audio_bytes=conv.audio_bytes + (len(audio) * 3 // 4 if isinstance(audio, str) else 0)
        )
    return conv


@dataclass(frozen=True)
class Turn:
    plan: Plan
    usage: dict[str, Any]
    conversation: Conversation  # after the answer


def respond(conv: Conversation, doc: dict[str, Any], output_default: int) -> Turn:
    """Plan the answer to a ``response.create`` and its ``response.done`` usage."""
    params = doc.get("response", {})
    if not isinstance(params, dict):
        raise SimRequestError("response: must be an object")
    cap = params.get("max_output_tokens", conv.cap)
    if cap == "inf" or cap is None:
        cap = None
    elif isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise SimRequestError(f"response.max_output_tokens: must be a positive integer or 'inf', got {cap!r}")
    allowed = output_default if cap is None else min(cap, output_default)
    modalities = tuple(params.get("output_modalities") or conv.modalities)
    words = max(1, allowed // (1 + AUDIO_TOKENS_PER_WORD)) if "audio" in modalities else allowed
    text_in = input_tokens({"items": list(conv.items), "instructions": conv.instructions, "response": params})
    text_in += conv.text_tokens
    audio_in = conv.audio_bytes // AUDIO_BYTES_PER_TOKEN + conv.audio_tokens
    audio_out = words * AUDIO_TOKENS_PER_WORD if "audio" in modalities else 0
    total_in = text_in + audio_in
    cached = min(conv.previous_input, total_in)
    cached_text = min(cached, text_in)
    usage = {
        "total_tokens": total_in + words + audio_out,
        "input_tokens": total_in,
        "output_tokens": words + audio_out,
        "input_token_details": {
            "text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0, "cached_tokens": cached,
            "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached - cached_text,
                                      "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": words, "audio_tokens": audio_out},
    }  # fmt: skip
    plan = Plan(OPENAI_REALTIME, conv.model, True, total_in, words + audio_out,
                cap is not None and cap <= output_default, cap)  # fmt: skip
    after = replace(conv, text_tokens=conv.text_tokens + words, audio_tokens=conv.audio_tokens + audio_out,
                    previous_input=total_in, turns=conv.turns + 1)  # fmt: skip
    return Turn(plan, usage, after)


def session_created(conv: Conversation, seed: str) -> dict[str, Any]:
    return {"type": "session.created", "event_id": "event_" + seed[:20],
            "session": {"id": "sess_" + seed[:24], "object": "realtime.session", "type": "realtime",
                        "model": conv.model, "output_modalities": list(conv.modalities)}}  # fmt: skip


def response_events(turn: Turn, seed: str) -> list[dict[str, Any]]:
    """The events of one answer, ending in ``response.done`` with the usage."""
    plan = turn.plan
    rid, item_id = "resp_" + seed[:24], "item_" + seed[:24]
    words = plan.output_tokens - turn.usage["output_token_details"]["audio_tokens"]
    pieces = Plan(plan.family, plan.model, True, 0, words, False).pieces
    text = "".join(pieces)
    where = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
    status = "incomplete" if plan.truncated else "completed"
    item = {"id": item_id, "object": "realtime.item", "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}  # fmt: skip
    head = {"id": rid, "object": "realtime.response", "conversation_id": "conv_" + seed[:24],
            "output_modalities": ["text"], "max_output_tokens": plan.cap or "inf"}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**head, "status": "in_progress", "output": [], "usage": None}},
        {"type": "response.output_item.added", "response_id": rid, "output_index": 0,
         "item": {**item, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where, "part": {"type": "output_text", "text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": piece} for piece in pieces),
        {"type": "response.output_text.done", **where, "text": text},
        {"type": "response.content_part.done", **where, "part": {"type": "output_text", "text": text}},
        {"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": item},
        {"type": "response.done", "response": {
            **head, "status": status, "output": [item], "usage": turn.usage,
            "status_details": {"type": "incomplete", "reason": "max_output_tokens"} if plan.truncated else None}},
    ]  # fmt: skip
    return [{"event_id": f"event_{seed[:12]}{n:04d}", **e} for n, e in enumerate(events)]
