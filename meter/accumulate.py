"""Per-family usage accumulators for streamed answers: one parsed event in at a time.

Each accumulator sees the JSON payload of every event of one stream, keeps only what the final
usage needs (never the content), and reports ``usage()`` and whether the stream's terminal event
was seen (``finished``). The rules, per family:

- Anthropic: usage starts from ``message_start``; every ``message_delta`` usage is *cumulative*
  and may come more than once, so each field it names replaces the previous value (never summed).
- OpenAI chat: the ``stream_options.include_usage`` chunk (``choices: []`` and a ``usage``).
- OpenAI Responses: the ``response`` of the terminal ``response.completed|incomplete|failed``.
- Gemini: the last ``usageMetadata``; Code Assist: the same, inside each event's ``response``.
- Bedrock Converse: the ``metadata`` event's ``usage``.
- Bedrock invoke (Anthropic on Bedrock): Anthropic events, base64 in each ``chunk``; the
  ``amazon-bedrock-invocationMetrics`` of the last chunk, when present, is authoritative.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Protocol

from bbnet import providers
from meter import usage as u

RESPONSES_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class Accumulator(Protocol):
    @property
    def finished(self) -> bool:
        """The stream's terminal event was seen."""
        ...

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        """One event: ``kind`` is the SSE ``event:`` or event-stream ``:event-type`` ("" if none)."""
        ...

    def usage(self) -> u.Usage | None: ...


def _model(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class Anthropic:
    def __init__(self, model_hint: str | None = None) -> None:
        self.finished = False
        self._usage: dict[str, Any] = {}
        self._model = model_hint
        self._seen = False

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        kind = payload.get("type", kind)
        if kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                self._model = _model(message.get("model")) or self._model
                start = message.get("usage")
                if isinstance(start, dict):
                    self._usage = dict(start)
                    self._seen = True
        elif kind == "message_delta":
            delta = payload.get("usage")
            if isinstance(delta, dict):
                self._usage.update({k: v for k, v in delta.items() if v is not None})
                self._seen = True
        elif kind == "message_stop":
            self.finished = True

    def usage(self) -> u.Usage | None:
        return u.anthropic(self._usage, self._model) if self._seen else None


class OpenAIChat:
    def __init__(self, model_hint: str | None = None) -> None:
        self.finished = False  # set by the tap on "data: [DONE]"
        self._usage: dict[str, Any] | None = None
        self._model = model_hint

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        self._model = _model(payload.get("model")) or self._model
        found = payload.get("usage")
        if isinstance(found, dict):
            self._usage = found

    def usage(self) -> u.Usage | None:
        return None if self._usage is None else u.openai_chat(self._usage, self._model)


class OpenAIResponses:
    def __init__(self, model_hint: str | None = None) -> None:
        self.finished = False
        self._usage: dict[str, Any] | None = None
        self._model = model_hint

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        response = payload.get("response")
        if not isinstance(response, dict):
            return
        self._model = _model(response.get("model")) or self._model
        if payload.get("type", kind) in RESPONSES_TERMINAL:
            self.finished = True
            found = response.get("usage")
            if isinstance(found, dict):
                self._usage = found

    def usage(self) -> u.Usage | None:
        return None if self._usage is None else u.openai_responses(self._usage, self._model)


class Gemini:
    def __init__(self, model_hint: str | None = None) -> None:
        self.finished = False
        self._found: u.Usage | None = None
        self._model = model_hint

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        self._model = _model(payload.get("modelVersion")) or self._model
        meta = payload.get("usageMetadata")
        if isinstance(meta, dict):
            self._found = u.gemini(meta, self._model)
        candidates = payload.get("candidates")
        if isinstance(candidates, list) and any(
            isinstance(c, dict) and c.get("finishReason") for c in candidates
        ):
            self.finished = True

    def usage(self) -> u.Usage | None:
        return self._found


class CodeAssist:
    """Code Assist's stream: each event is ``{"response": <a Gemini chunk>, "traceId": ...}``."""

    def __init__(self, model_hint: str | None = None) -> None:
        self._inner = Gemini(model_hint)

    @property
    def finished(self) -> bool:
        return self._inner.finished

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        inner = payload.get("response")
        if isinstance(inner, dict):
            self._inner.add(kind, inner)

    def usage(self) -> u.Usage | None:
        return self._inner.usage()


class BedrockConverse:
    def __init__(self, model_hint: str | None = None) -> None:
        self.finished = False
        self._found: u.Usage | None = None
        self._model = model_hint

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "metadata" or "usage" in payload:
            found = payload.get("usage")
            if isinstance(found, dict):
                self._found = u.bedrock_converse(found, self._model)
                self.finished = True

    def usage(self) -> u.Usage | None:
        return self._found


class BedrockInvoke:
    """invoke-with-response-stream: ``chunk`` events whose ``bytes`` are base64 model events."""

    def __init__(self, model_hint: str | None = None) -> None:
        self._inner = Anthropic(model_hint)
        self._metrics: u.Usage | None = None
        self._model_hint = model_hint

    @property
    def finished(self) -> bool:
        return self._inner.finished or self._metrics is not None

    def add(self, kind: str, payload: dict[str, Any]) -> None:
        encoded = payload.get("bytes")
        if not isinstance(encoded, str):
            return
        try:
            inner = json.loads(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"bad invoke-with-response-stream chunk: {exc}") from None
        if not isinstance(inner, dict):
            return
        self._inner.add("", inner)
        metrics = inner.get("amazon-bedrock-invocationMetrics")
        if isinstance(metrics, dict):
            inner_usage = self._inner.usage()
            model = inner_usage.model if inner_usage else self._model_hint
            self._metrics = u.bedrock_invocation_metrics(metrics, model)

    def usage(self) -> u.Usage | None:
        return self._metrics or self._inner.usage()


_BY_FAMILY: dict[
    str, type[Anthropic | OpenAIChat | OpenAIResponses | Gemini | CodeAssist | BedrockConverse]
] = {
    providers.ANTHROPIC_MESSAGES: Anthropic,
    providers.OPENAI_CHAT: OpenAIChat,
    providers.OPENAI_RESPONSES: OpenAIResponses,
    providers.GEMINI: Gemini,
    providers.CODE_ASSIST: CodeAssist,
    providers.BEDROCK_CONVERSE: BedrockConverse,
}


def for_family(family: str, model_hint: str | None = None) -> Accumulator:
    if family == providers.BEDROCK_INVOKE:
        return BedrockInvoke(model_hint)
    try:
        return _BY_FAMILY[family](model_hint)
    except KeyError:
        raise ValueError(f"unknown API family {family!r}") from None
