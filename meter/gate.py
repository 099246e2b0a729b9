"""Pure: what the gate does with one LLM request, before and after the ledger speaks.

:func:`plan` reads the request (model, input estimate, output asked for, stream or not);
:func:`reserve_request` turns the plan into the ledger's :class:`ReserveRequest`;
:func:`rewrite` applies the ledger's answer to the body that is forwarded (DEGRADE lowers the
output cap; an OpenAI chat stream gets ``include_usage`` so it can be metered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bbnet import providers
from bbnet.model import Outcome, Rates, ReserveRequest, ReserveResult
from bbnet.providers import Match
from meter import estimate, request


@dataclass(frozen=True)
class Plan:
    provider: str
    family: str
    model: str | None
    input_tokens: int  # estimate
    max_output_tokens: int  # the request's cap, else the model's
    stream: bool
    readable: bool  # the body is a JSON object we can edit
    cappable: bool = True  # DEGRADE can lower the output cap (not embeddings, not the ChatGPT backend)


def plan(match: Match, path: str, body: bytes, known_input: int | None = None) -> Plan:
    """Everything the gate needs to know about a request, from its original path and body.

    ``known_input``: an input estimate found elsewhere (meter/prefix.py, learned from the agent's
    earlier calls); when given, the heuristic (meter/estimate.py) is not run."""
    return plan_read(match, path, body, known_input)[0]


def plan_read(match: Match, path: str, body: bytes, known_input: int | None = None,
              read: dict[str, Any] | None = None) -> tuple[Plan, dict[str, Any] | None]:  # fmt: skip
    """:func:`plan`, from the body's top-level members when they were read already (meter/shape.py
    reads a conversation's next turn without parsing it all); returns them too, for :func:`rewrite`
    (None: the body is not a JSON object)."""
    if read is not None:
        return plan_doc(match, path, read, known_input), read
    try:
        doc = request.parse_body(body)
    except request.RequestError:
        model = request.model_of(match.family, {}, match.model_from_path)
        guess = estimate.input_tokens_from_bytes(match.family, body) if known_input is None else known_input
        return Plan(match.provider, match.family, model, guess,
                    request.requested_output(match.family, {}, model, match.provider),
                    request.is_stream(match.family, path, {}), False, False), None  # fmt: skip
    return plan_doc(match, path, doc, known_input), doc


def plan_doc(match: Match, path: str, doc: dict[str, Any], known_input: int | None = None) -> Plan:
    """:func:`plan` for a body already parsed (a WebSocket ``response.create`` message)."""
    model = request.model_of(match.family, doc, match.model_from_path)
    return Plan(
        provider=match.provider,
        family=match.family,
        model=model,
        input_tokens=estimate.input_tokens(match.family, doc) if known_input is None else known_input,
        max_output_tokens=request.requested_output(match.family, doc, model, match.provider),
        stream=request.is_stream(match.family, path, doc),
        readable=True,
        cappable=match.caps_output and request.has_output_cap(match.family),
    )


def reserve_request(p: Plan, key: str, bottle: str, agent: str, rates: Rates | None,
                    lease_seconds: float) -> ReserveRequest:  # fmt: skip
    return ReserveRequest(
        key=key,
        bottle=bottle,
        agent=agent,
        provider=p.provider,
        model=p.model,
        input_tokens=p.input_tokens,
        max_output_tokens=p.max_output_tokens,
        rates=rates,
        lease_seconds=lease_seconds,
        # a call whose cap cannot be lowered is admitted whole or not at all (embeddings: input only)
        min_output_tokens=1 if p.cappable else p.max_output_tokens,
    )


@dataclass(frozen=True)
class Rewrite:
    body: bytes
    degraded_to: int | None  # the output cap DEGRADE set, if any
    injected_usage: bool  # include_usage was added: the tap strips the extra chunk


def rewrite(p: Plan, body: bytes, result: ReserveResult, read: dict[str, Any] | None = None) -> Rewrite:
    """The body to forward after an ALLOW or DEGRADE (the same object when nothing changed).
    ``read``: the body's top-level members, as :func:`plan_read` returned them."""
    degraded_to = None
    if result.outcome is Outcome.DEGRADE and p.readable and p.cappable:
        body = request.apply_cap(p.family, body, result.allowed_output_tokens, p.provider)
        degraded_to = result.allowed_output_tokens
    injected = False
    if p.family == providers.OPENAI_CHAT and p.stream and p.readable:
        body, injected = request.ensure_stream_usage(body, read)
    return Rewrite(body, degraded_to, injected)
