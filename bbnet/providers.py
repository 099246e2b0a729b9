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

#: Budget keys that settings and the CLI accept; ``*`` is "every provider".
PROVIDER_KEYS: frozenset[str] = frozenset(p.key for p in BUILTIN) | {"*"}


def with_extra(extra: Iterable[Provider]) -> tuple[Provider, ...]:
    """The built-in catalogue plus providers from settings (checked first, so they can override)."""
    return (*extra, *BUILTIN)


@dataclass(frozen=True)
class FreeRoute:
    """A call on a provider's host that spends nothing (token counting, model listings)."""

    method: str
    path: re.Pattern[str]


def _free(method: str, pattern: str) -> FreeRoute:
    return FreeRoute(method, re.compile(pattern))


_MODELS = r"/models(?:/[^/]+)?"
_COMPAT_FREE = (_free("GET", r"(?:/.*)?" + _MODELS),)
#: Free calls per provider key; the egress policy lets them pass unmetered. (Providers added from
#: settings speak OpenAI's format and get its model listing.)
FREE: dict[str, tuple[FreeRoute, ...]] = {
    "anthropic": (_free("POST", r"/v1/messages/count_tokens"), _free("GET", r"/v1" + _MODELS)),
    "openai": (_free("POST", r"/v1/responses/input_tokens"), _free("GET", r"/v1" + _MODELS)),
    "google": (
        _free("POST", r"/v1(?:beta|alpha)?/models/[^/:]+:countTokens"),
        _free("GET", r"/v1(?:beta|alpha)?" + _MODELS),
    ),
    "bedrock": (_free("POST", r"/model/[^/]+/count-tokens"),),
}


def provider_of(host: str, catalogue: tuple[Provider, ...] = BUILTIN) -> Provider | None:
    """The LLM provider whose host this is (whatever the path), or None."""
    host = host.lower().rstrip(".")
    return next((p for p in catalogue if p.host.fullmatch(host)), None)


def is_free(provider: Provider, method: str, path: str) -> bool:
    """Whether ``method path`` on the provider's host is one of its free calls."""
    path = path.split("?", 1)[0]
    routes = FREE.get(provider.key, _COMPAT_FREE if provider.routes is _CHAT else ())
    return any(r.method == method and r.path.fullmatch(path) for r in routes)


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
