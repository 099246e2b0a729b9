"""The provider catalogue: which hosts and paths are LLM APIs, of which family, priced how.

This is the one place that knows provider hosts. The meter classifies requests with
:func:`classify`; settings validate provider keys against :data:`PROVIDER_KEYS`; budgets are keyed
by :attr:`Provider.key`. Settings may add OpenAI-compatible hosts (see :func:`with_extra`).

A route of family :data:`FREE` is an endpoint that bills nothing (token counting, model
listings): the meter passes it without a reservation or a usage row, and :func:`is_free` lets an
egress policy tell such a path from one the catalogue does not know (``classify`` gives None).

Budget keys: Vertex AI's Gemini counts under ``google`` and its Claude under ``anthropic`` (the
same models, the same list prices); Azure OpenAI under ``azure`` (genai-prices prices Azure
deployments itself). Two keys are subscriptions, not invoices: ``chatgpt`` (Codex on a ChatGPT
plan) and ``code-assist`` (Gemini CLI logged in with Google). Their cost is the API list price
of the same usage — an equivalent, not what the plan charges — and their own key keeps that
apart in every budget and report (the cost report lists them as ``list_price_equivalents``).
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
OPENAI_EMBEDDINGS = "openai-embeddings"
GEMINI_EMBED = "gemini-embed"  # embedContent and batchEmbedContents
BEDROCK_EMBED = "bedrock-embed"  # InvokeModel of an embedding model (Titan, Cohere)
CODE_ASSIST = "gemini-code-assist"  # Gemini wrapped in Code Assist's {model, project, request} envelope
FAMILIES = (
    ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES, GEMINI, BEDROCK_CONVERSE, BEDROCK_INVOKE,
    OPENAI_EMBEDDINGS, GEMINI_EMBED, BEDROCK_EMBED, CODE_ASSIST,
)  # fmt: skip
#: Families with no output tokens: the reservation holds input only.
EMBEDDING_FAMILIES = frozenset({OPENAI_EMBEDDINGS, GEMINI_EMBED, BEDROCK_EMBED})
# WebSocket-only: the Realtime API's events (the Responses API's WebSocket mode is OPENAI_RESPONSES).
OPENAI_REALTIME = "openai-realtime"
FREE = "free"  # not a wire format: an endpoint that bills nothing


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
    # False: the API refuses the family's output-cap field (the ChatGPT backend refuses
    # max_output_tokens), so the gate cannot DEGRADE: a call needs room for its whole output cap
    caps_output: bool = True
    # True: a subscription's traffic (not invoiced per token); its cost is the API list price of
    # the same usage, an equivalent, and reports say so
    list_price: bool = False


@dataclass(frozen=True)
class Match:
    provider: str
    family: str
    price_provider: str
    model_from_path: str | None = None  # Gemini, Vertex and Bedrock name the model in the path
    caps_output: bool = True  # see Provider.caps_output

    @property
    def free(self) -> bool:
        return self.family == FREE


def _r(pattern: str, family: str) -> Route:
    return Route(re.compile(pattern), family)


_CHAT = (
    _r(r"(?:/.*)?/chat/completions", OPENAI_CHAT),
    _r(r"(?:/.*)?/responses", OPENAI_RESPONSES),
    _r(r"(?:/.*)?/embeddings", OPENAI_EMBEDDINGS),
    _r(r"(?:/.*)?/models(?:/[^/]+)?", FREE),
)


def openai_compatible(key: str, host: str, price_provider: str | None = None) -> Provider:
    """A host that speaks OpenAI's chat (responses, embeddings) format under any path prefix."""
    return Provider(key, re.compile(re.escape(host)), _CHAT, price_provider or key)


_GEMINI_VERSION = r"/v1(?:beta|alpha)?"
_VERTEX_HOST = re.compile(r"(?:[a-z0-9-]+-)?aiplatform\.googleapis\.com")
_VERTEX_MODELS = r"/v1(?:beta1)?/projects/[^/]+/locations/[^/]+/publishers/{publisher}/models"
_AZURE_DEPLOYMENT = r"/openai/deployments/[^/]+"
_OPENAI_HOST = re.compile(r"api\.openai\.com")
_AZURE_HOST = re.compile(r"[a-z0-9][a-z0-9-]*\.(?:openai\.azure\.com|cognitiveservices\.azure\.com)")

BUILTIN: tuple[Provider, ...] = (
    Provider(
        "anthropic",
        re.compile(r"api\.anthropic\.com"),
        (
            _r(r"/v1/messages", ANTHROPIC_MESSAGES),
            _r(r"/v1/messages/count_tokens", FREE),
            _r(r"/v1/models(?:/[^/]+)?", FREE),
        ),
        "anthropic",
    ),
    Provider(
        "openai",
        _OPENAI_HOST,
        (
            _r(r"/v1/chat/completions", OPENAI_CHAT),
            _r(r"/v1/responses(?:/compact)?", OPENAI_RESPONSES),
            _r(r"/v1/embeddings", OPENAI_EMBEDDINGS),
            _r(r"/v1/responses/input_tokens", FREE),
            _r(r"/v1/models(?:/[^/]+)?", FREE),
        ),
        "openai",
    ),
    Provider(
        "google",
        re.compile(r"generativelanguage\.googleapis\.com"),
        (
            _r(_GEMINI_VERSION + r"/models/(?P<model>[^/:]+):(?:stream)?[gG]enerateContent", GEMINI),
            _r(
                _GEMINI_VERSION + r"/models/(?P<model>[^/:]+):(?:batchEmbedContents|embedContent)",
                GEMINI_EMBED,
            ),
            _r(_GEMINI_VERSION + r"/models/[^/:]+:countTokens", FREE),
            _r(_GEMINI_VERSION + r"/models(?:/[^/:]+)?", FREE),
        ),
        "google",
    ),
    Provider(
        "google",  # Vertex AI's Gemini: the Gemini wire format under a project path
        _VERTEX_HOST,
        (
            _r(
                _VERTEX_MODELS.format(publisher="google")
                + r"/(?P<model>[^/:]+):(?:stream)?[gG]enerateContent",
                GEMINI,
            ),
            _r(_VERTEX_MODELS.format(publisher="google") + r"/[^/:]+:countTokens", FREE),
        ),
        "google",
    ),
    Provider(
        "anthropic",  # Claude on Vertex AI: the Messages wire format, the model in the path
        _VERTEX_HOST,
        (
            _r(_VERTEX_MODELS.format(publisher="anthropic") + r"/count-tokens:rawPredict", FREE),
            _r(
                _VERTEX_MODELS.format(publisher="anthropic") + r"/(?P<model>[^/:]+):(?:stream)?[rR]awPredict",
                ANTHROPIC_MESSAGES,
            ),
        ),
        "anthropic",
    ),
    Provider(
        "azure",  # Azure OpenAI: a deployment name is not a model name; the answer names the model
        _AZURE_HOST,
        (
            _r(_AZURE_DEPLOYMENT + r"/chat/completions", OPENAI_CHAT),
            _r(_AZURE_DEPLOYMENT + r"/responses", OPENAI_RESPONSES),
            _r(_AZURE_DEPLOYMENT + r"/embeddings", OPENAI_EMBEDDINGS),
            _r(r"/openai/v1/chat/completions", OPENAI_CHAT),
            _r(r"/openai/v1/responses(?:/compact)?", OPENAI_RESPONSES),
            _r(r"/openai/v1/embeddings", OPENAI_EMBEDDINGS),
            _r(r"/openai/v1/responses/input_tokens", FREE),
            _r(r"/openai(?:/v1)?/models(?:/[^/]+)?", FREE),
        ),
        "azure",
    ),
    Provider(
        "code-assist",  # Gemini CLI logged in with Google: a subscription, priced at Gemini list prices
        re.compile(r"cloudcode-pa\.googleapis\.com"),
        (
            _r(r"/v1internal:(?:stream)?[gG]enerateContent", CODE_ASSIST),
            _r(
                r"/v1internal:(?:countTokens|loadCodeAssist|onboardUser|listExperiments|retrieveUserQuota"
                r"|recordCodeAssistMetrics|fetchAdminControls|getCodeAssistGlobalUserSetting"
                r"|setCodeAssistGlobalUserSetting)",
                FREE,
            ),
        ),
        "google",
        list_price=True,
    ),
    Provider(
        "chatgpt",  # Codex on a ChatGPT plan: a subscription, priced at OpenAI list prices
        re.compile(r"chatgpt\.com"),
        (
            _r(r"/backend-api/codex/responses(?:/compact)?", OPENAI_RESPONSES),
            _r(r"/backend-api/codex/models", FREE),
        ),
        "openai",
        caps_output=False,
        list_price=True,
    ),
    Provider(
        "bedrock",
        re.compile(r"bedrock-runtime(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com"),
        (
            _r(r"/model/(?P<model>[^/]+)/converse(?:-stream)?", BEDROCK_CONVERSE),
            _r(r"/model/(?P<model>[^/]*embed[^/]*)/invoke", BEDROCK_EMBED),
            _r(r"/model/(?P<model>[^/]+)/invoke(?:-with-response-stream)?", BEDROCK_INVOKE),
            _r(r"/model/[^/]+/count-tokens", FREE),
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
    caps_output: bool = True  # see Provider.caps_output


SOCKETS: tuple[SocketRoute, ...] = (
    SocketRoute("openai", _OPENAI_HOST, re.compile(r"/v1/responses"), OPENAI_RESPONSES, "openai"),
    SocketRoute("openai", _OPENAI_HOST, re.compile(r"/v1/realtime"), OPENAI_REALTIME, "openai"),
    SocketRoute("azure", _AZURE_HOST, re.compile(r"/openai(?:/v1)?/responses"), OPENAI_RESPONSES, "azure"),
    SocketRoute("azure", _AZURE_HOST, re.compile(r"/openai(?:/v1)?/realtime"), OPENAI_REALTIME, "azure"),
    # Codex on a ChatGPT plan: the same WebSocket mode on the ChatGPT backend (no output cap there)
    SocketRoute(
        "chatgpt",
        re.compile(r"chatgpt\.com"),
        re.compile(r"/backend-api/codex/responses"),
        OPENAI_RESPONSES,
        "openai",
        caps_output=False,
    ),
)

#: Budget keys that settings and the CLI accept; ``*`` is "every provider".
PROVIDER_KEYS: frozenset[str] = frozenset(p.key for p in BUILTIN) | {r.key for r in SOCKETS} | {"*"}
#: Keys whose cost is a list-price equivalent of a subscription's use, not an invoice.
LIST_PRICE_KEYS: frozenset[str] = frozenset(p.key for p in BUILTIN if p.list_price)


def with_extra(extra: Iterable[Provider]) -> tuple[Provider, ...]:
    """The built-in catalogue plus providers from settings (checked first, so they can override)."""
    return (*extra, *BUILTIN)


def classify(host: str, path: str, catalogue: tuple[Provider, ...] = BUILTIN) -> Match | None:
    """Return the provider and family of a request, from its original host and path (no query).

    Several providers may share a host (Vertex AI serves Gemini and Claude); the first route that
    matches wins, so providers from settings, checked first, override the built-in ones.
    """
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0]
    for provider in catalogue:
        if not provider.host.fullmatch(host):
            continue
        for route in provider.routes:
            m = route.path.fullmatch(path)
            if m:
                model = m.groupdict().get("model")
                return Match(provider.key, route.family, provider.price_provider, model, provider.caps_output)
    return None


def classify_socket(host: str, path: str) -> Match | None:
    """The provider and family of a WebSocket upgrade, from its original host and path (no query)."""
    host = host.lower().rstrip(".")
    path = path.split("?", 1)[0]
    for route in SOCKETS:
        if route.host.fullmatch(host) and route.path.fullmatch(path):
            return Match(route.key, route.family, route.price_provider, caps_output=route.caps_output)
    return None


def is_provider_host(host: str, catalogue: tuple[Provider, ...] = BUILTIN) -> bool:
    """Whether ``host`` is an LLM API host of the catalogue or of a WebSocket API."""
    host = host.lower().rstrip(".")
    return any(p.host.fullmatch(host) for p in catalogue) or any(r.host.fullmatch(host) for r in SOCKETS)


def refusal_family(host: str, catalogue: tuple[Provider, ...] = BUILTIN) -> str | None:
    """The wire format the meter answers a refused call on an LLM host in (its first metered
    route's); None: ``host`` is not an LLM API host."""
    host = host.lower().rstrip(".")
    for provider in catalogue:
        if provider.host.fullmatch(host):
            return next((r.family for r in provider.routes if r.family != FREE), OPENAI_CHAT)
    return next((r.family for r in SOCKETS if r.host.fullmatch(host)), None)


def is_free(host: str, path: str, catalogue: tuple[Provider, ...] = BUILTIN) -> bool:
    """Whether the catalogue knows this endpoint as one that bills nothing."""
    match = classify(host, path, catalogue)
    return match is not None and match.free
