"""Which family a simulator request belongs to, and the answer to it.

Routing reuses the provider catalogue's path patterns (:mod:`bbnet.providers`), so the
simulator serves exactly the paths the meter meters, whatever host name the client used.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from bbnet.providers import (
    ANTHROPIC_MESSAGES,
    BEDROCK_CONVERSE,
    BEDROCK_EMBED,
    BEDROCK_INVOKE,
    BUILTIN,
    CODE_ASSIST,
    FREE,
    GEMINI,
    GEMINI_EMBED,
    OPENAI_CHAT,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
)
from meter import sim_anthropic, sim_bedrock, sim_embed, sim_free, sim_gemini, sim_openai
from meter.sim_plan import DEFAULT_OUTPUT_TOKENS, Plan, SimRequestError, parse_body, plan_request
from meter.sim_replay import ReplayBook
from meter.sim_wire import Reply, error_reply, guess_family, json_reply

#: The model an Azure deployment runs: its answers name this, not the deployment.
AZURE_DEPLOYED_MODEL = "gpt-4o-mini-2024-07-18"
_AZURE_DEPLOYMENT = "/openai/deployments/"
_CHATGPT_BACKEND = "/backend-api/codex/"


@dataclass(frozen=True)
class SimConfig:
    latency_ms: int = 0  # before the first byte of every answer
    chunk_delay_ms: int = 0  # between two chunks of a stream
    output_tokens: int = DEFAULT_OUTPUT_TOKENS  # output when the request's cap allows more
    replay: ReplayBook | None = None  # answer with recorded responses instead of generating

    def __post_init__(self) -> None:
        for name in ("latency_ms", "chunk_delay_ms", "output_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Route:
    family: str
    model: str | None  # Gemini, Vertex and Bedrock name the model in the path (Azure: the deployment's)


@dataclass(frozen=True)
class Answer:
    reply: Reply
    family: str | None  # None: the path is not a provider API
    plan: Plan | None  # None: replayed, or refused before a plan was made


def route(path: str) -> Route | None:
    """The family serving ``path`` (no query), from the catalogue's patterns."""
    for provider in BUILTIN:
        for pattern in provider.routes:
            match = pattern.path.fullmatch(path)
            if match:
                model = match.groupdict().get("model")
                if path.startswith(_AZURE_DEPLOYMENT):
                    model = AZURE_DEPLOYED_MODEL
                return Route(pattern.family, unquote(model) if model else None)
    return None


def _generate(config: SimConfig, plan: Plan, path: str, query: str, body: dict[str, object], seed: str,
              now: int) -> Reply:  # fmt: skip
    family = plan.family
    if family == ANTHROPIC_MESSAGES:
        return sim_anthropic.reply(plan, seed)
    if family == OPENAI_CHAT:
        return sim_openai.chat_reply(plan, seed, now)
    if family == OPENAI_RESPONSES:
        return sim_openai.responses_reply(plan, seed, now, compact=path.endswith("/responses/compact"))
    if family in (GEMINI, CODE_ASSIST):
        alt_sse = parse_qs(query).get("alt") == ["sse"]
        return sim_gemini.reply(plan, seed, alt_sse=alt_sse, envelope=family == CODE_ASSIST)
    if family == OPENAI_EMBEDDINGS:
        return sim_embed.openai_reply(plan, body, seed)
    if family == GEMINI_EMBED:
        return sim_embed.gemini_reply(path, body, seed)
    if family == BEDROCK_EMBED:
        return sim_embed.bedrock_reply(plan, body, seed)
    if family == BEDROCK_CONVERSE:
        return sim_bedrock.converse_reply(plan, seed, config.latency_ms)
    if family == BEDROCK_INVOKE:
        return sim_bedrock.invoke_reply(plan, seed, config.latency_ms)
    raise ValueError(f"no simulator for family {family!r}")


def answer(
    config: SimConfig,
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    anthropic_client: bool,
    seed: str,
    now: int,
) -> Answer:
    """The answer to one provider request. ``anthropic_client``: the request carried Anthropic's
    headers (it picks the error dialect for a path no provider serves)."""
    found = route(path)
    if config.replay is not None:
        recorded = config.replay.answer(method, path, body)
        if recorded is not None:
            return Answer(recorded, found.family if found else None, None)
        family = found.family if found else guess_family(path, anthropic_client)
        return Answer(error_reply(family, 404, f"no recorded response for {method} {path}", seed), None, None)
    if found is not None and found.family == FREE:
        return _free(method, path, body, anthropic_client, seed)
    if found is None or method != "POST":
        family = found.family if found else guess_family(path, anthropic_client)
        return Answer(error_reply(family, 404, f"Invalid URL ({method} {path})", seed), None, None)
    try:
        doc = parse_body(body)
        if path.startswith(_CHATGPT_BACKEND) and "max_output_tokens" in doc:  # as the backend refuses it
            return Answer(
                json_reply({"detail": "Unsupported parameter: max_output_tokens"}, status=400),
                found.family,
                None,
            )
        plan = plan_request(found.family, path, doc, found.model, config.output_tokens)
        return Answer(_generate(config, plan, path, query, doc, seed, now), found.family, plan)
    except SimRequestError as exc:
        return Answer(error_reply(found.family, 400, str(exc), seed), found.family, None)


def _free(method: str, path: str, body: bytes, anthropic_client: bool, seed: str) -> Answer:
    dialect = guess_family(path, anthropic_client)
    try:
        reply = sim_free.reply(method, path, parse_body(body) if method == "POST" else {}, anthropic_client)
    except SimRequestError as exc:
        return Answer(error_reply(dialect, 400, str(exc), seed), FREE, None)
    if reply is None:
        return Answer(error_reply(dialect, 404, f"Invalid URL ({method} {path})", seed), FREE, None)
    return Answer(reply, FREE, None)
