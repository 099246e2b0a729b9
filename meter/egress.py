"""Pure: the egress decision for one request or connection, from the policy and the catalogue.

On an LLM provider's host, a call the meter meters goes to the gate; a free call (token counting,
model listings) and a WebSocket upgrade the WebSocket meter handles pass; anything else there is
refused as ``UNMETERED`` unless a rule naming the host says ``unmetered: allow``. Any other host
passes only if a rule of the policy allows it, else ``EGRESS_DENIED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bbnet import providers
from bbnet.egress import Policy

EGRESS_DENIED = "EGRESS_DENIED"
UNMETERED = "UNMETERED"


class Verdict(StrEnum):
    METERED = "metered"  # to the gate: reserve, forward, commit
    FREE = "free"  # a provider's free call
    WEBSOCKET = "websocket"  # metered by the WebSocket meter
    ALLOWED = "allowed"  # a policy rule allows it
    EGRESS_DENIED = EGRESS_DENIED
    UNMETERED = UNMETERED


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    match: providers.Match | None = None  # METERED
    provider: providers.Provider | None = None  # the host's LLM provider, if it is one

    @property
    def refused(self) -> bool:
        return self.verdict in (Verdict.EGRESS_DENIED, Verdict.UNMETERED)


def websocket_metered(provider: providers.Provider, path: str) -> bool:
    """Whether the WebSocket meter meters an upgrade to ``path`` on the provider's host.

    Today: OpenAI's Responses and Realtime WebSocket endpoints. The WebSocket meter owns this fact;
    this is the one function to point at it.
    """
    path = path.split("?", 1)[0]
    return provider.key == "openai" and (path == "/v1/responses" or path.startswith("/v1/realtime"))


def is_upgrade(method: str, upgrade: str | None) -> bool:
    return method == "GET" and upgrade is not None and upgrade.strip().lower() == "websocket"


def decide(
    policy: Policy, catalogue: tuple[providers.Provider, ...], method: str, host: str, path: str,
    upgrade: str | None = None,
) -> Decision:  # fmt: skip
    provider = providers.provider_of(host, catalogue)
    if provider is None:
        allowed = policy.rule_for(host, method, path) is not None
        return Decision(Verdict.ALLOWED if allowed else Verdict.EGRESS_DENIED)
    if is_upgrade(method, upgrade):
        if websocket_metered(provider, path):
            return Decision(Verdict.WEBSOCKET, provider=provider)
    elif method == "POST":
        match = providers.classify(host, path, catalogue)
        if match is not None:
            return Decision(Verdict.METERED, match, provider)
    if providers.is_free(provider, method, path):
        return Decision(Verdict.FREE, provider=provider)
    rule = policy.rule_for(host, method, path)
    if rule is not None and rule.unmetered:
        return Decision(Verdict.ALLOWED, provider=provider)
    return Decision(Verdict.UNMETERED, provider=provider)


def decide_connection(policy: Policy, catalogue: tuple[providers.Provider, ...], host: str) -> Decision:
    """A connection that is not HTTP (raw TCP through CONNECT): allowed only by a rule for the whole
    host; on an LLM host, only with ``unmetered: allow`` (nothing there is metered)."""
    provider = providers.provider_of(host, catalogue)
    rules = policy.host_rules(host)
    if provider is not None:
        ok = any(r.unmetered for r in rules)
        return Decision(Verdict.ALLOWED if ok else Verdict.UNMETERED, provider=provider)
    return Decision(Verdict.ALLOWED if rules else Verdict.EGRESS_DENIED)
