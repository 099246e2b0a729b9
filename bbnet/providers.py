"""The provider catalogue: which hosts and paths are LLM APIs, of which family, priced how.

This is the one place that knows provider hosts. The meter classifies requests with
:func:`classify`; settings validate provider keys against :data:`PROVIDER_KEYS`; budgets are keyed
by :attr:`Provider.key`. Settings may add OpenAI-compatible hosts (see :func:`with_extra`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# API families: the wire format the meter parses.
ANTHROPIC_MESSAGES = "anthropic-messages"
OPENAI_CHAT = "openai-chat"
OPENAI_RESPONSES = "openai-responses"
GEMINI = "gemini"
BEDROCK_CONVERSE = "bedrock-converse"
BEDROCK_INVOKE = "bedrock-invoke"
FAMILIES = (ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES, GEMINI, BEDROCK_CONVERSE, BEDROCK_INVOKE)
# WebSocket-only: the Realtime API's events (the Responses API's WebSocket mode is OPENAI_RESPONSES).
OPENAI_REALTIME = "openai-realtime"


@dataclass(frozen=True)
class Route:
    """A path pattern on a provider's host and the family it speaks."""

    path: re.Pattern[str]
    family: str


@dataclass(frozen=True)
class Provider:
    key: str  # the budget key: anthropic, openai, google, bedrock, ...
    host: re.Pattern[str]  # full-match on the request's original host
    routes: tuple[Route, ...]
    price_provider: str  # genai-prices provider id


@dataclass(frozen=True)
class Match:
    provider: str
    family: str
    price_provider: str
    model_from_path: str | None = None  # Gemini and Bedrock name the model in the path


def _r(pattern: str, family: str) -> Route:
    return Route(re.compile(pattern), family)


_CHAT = (_r(r"(?:/.*)?/chat/completions", OPENAI_CHAT), _r(r"(?:/.*)?/responses", OPENAI_RESPONSES))


def openai_compatible(key: str, host: str, price_provider: str | None = None) -> Provider:
    """A host that speaks OpenAI's chat (and responses) format under any path prefix."""
    return Provider(key, re.compile(re.escape(host)), _CHAT, price_provider or key)


BUILTIN: tuple[Provider, ...] = (
    Provider(
        "anthropic",
        re.compile(r"api\.anthropic\.com"),
        (_r(r"/v1/messages", ANTHROPIC_MESSAGES),),
        "anthropic",
    ),
    Provider(
        "openai",
        re.compile(r"api\.openai\.com"),
        (_r(r"/v1/chat/completions", OPENAI_CHAT), _r(r"/v1/responses", OPENAI_RESPONSES)),
        "openai",
    ),
    Provider(
        "google",
        re.compile(r"generativelanguage\.googleapis\.com"),
        (_r(r"/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?:stream)?[gG]enerateContent", GEMINI),),
        "google",
    ),
    Provider(
        "bedrock",
        re.compile(r"bedrock-runtime(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com"),
        (
            _r(r"/model/(?P<model>[^/]+)/converse(?:-stream)?", BEDROCK_CONVERSE),
            _r(r"/model/(?P<model>[^/]+)/invoke(?:-with-response-stream)?", BEDROCK_INVOKE),
        ),
        "aws",
    ),
    openai_compatible("openrouter", "openrouter.ai"),
    openai_compatible("groq", "api.groq.com"),
    openai_compatible("deepseek", "api.deepseek.com"),
    openai_compatible("xai", "api.x.ai", "x-ai"),
    openai_compatible("mistral", "api.mistral.ai"),
    openai_compatible("cerebras", "api.cerebras.ai"),
    openai_compatible("together", "api.together.xyz", "together"),
)


@dataclass(frozen=True)
class SocketRoute:
    """A WebSocket API: the upgrade's ``GET`` path on a provider's host and the events it speaks."""

    key: str
    host: re.Pattern[str]
    path: re.Pattern[str]
    family: str  # OPENAI_RESPONSES (Responses WebSocket mode) or OPENAI_REALTIME
    price_provider: str


_OPENAI_HOST = re.compile(r"api\.openai\.com")
_AZURE_HOST = re.compile(r"[a-z0-9][a-z0-9-]*\.openai\.azure\.com")
SOCKETS: tuple[SocketRoute, ...] = (
    SocketRoute("openai", _OPENAI_HOST, re.compile(r"/v1/responses"), OPENAI_RESPONSES, "openai"),
    SocketRoute("openai", _OPENAI_HOST, re.compile(r"/v1/realtime"), OPENAI_REALTIME, "openai"),
    SocketRoute("azure", _AZURE_HOST, re.compile(r"/openai(?:/v1)?/responses"), OPENAI_RESPONSES, "azure"),
    SocketRoute("azure", _AZURE_HOST, re.compile(r"/openai(?:/v1)?/realtime"), OPENAI_REALTIME, "azure"),
)

#: Budget keys that settings and the CLI accept; ``*`` is "every provider".
PROVIDER_KEYS: frozenset[str] = frozenset(p.key for p in BUILTIN) | {r.key for r in SOCKETS} | {"*"}


def with_extra(extra: Iterable[Provider]) -> tuple[Provider, ...]:
    """The built-in catalogue plus providers from settings (checked first, so they can override)."""
    return (*extra, *BUILTIN)


def classify(host: str, path: str, catalogue: tuple[Provider, ...] = BUILTIN) -> Match | None:
    """Return the provider and family of a request, from its original host and path (no query)."""
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0]
    for provider in catalogue:
        if not provider.host.fullmatch(host):
            continue
        for route in provider.routes:
            m = route.path.fullmatch(path)
            if m:
                model = m.groupdict().get("model")
                return Match(provider.key, route.family, provider.price_provider, model)
        return None
    return None


def classify_socket(host: str, path: str) -> Match | None:
    """The provider and family of a WebSocket upgrade, from its original host and path (no query)."""
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0]
    for route in SOCKETS:
        if route.host.fullmatch(host) and route.path.fullmatch(path):
            return Match(route.key, route.family, route.price_provider)
    return None


def is_provider_host(host: str, catalogue: tuple[Provider, ...] = BUILTIN) -> bool:
    """Whether ``host`` is an LLM API host of the catalogue or of a WebSocket API."""
    host = host.lower().rstrip(".")
    return any(p.host.fullmatch(host) for p in catalogue) or any(r.host.fullmatch(host) for r in SOCKETS)
