"""Pure: the egress decision for one request or connection, from the policy and the catalogue.

On an LLM provider's host, a call the meter meters goes to the gate; a free call (the catalogue's
``FREE`` routes: token counting, model listings) and a WebSocket upgrade the WebSocket meter
reads pass; anything else there is refused as ``UNMETERED`` unless a rule naming the host says
``unmetered: allow``. Any other host passes only if a rule of the policy allows it, else
``EGRESS_DENIED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bbnet import providers
from bbnet.egress import Policy
from meter.ws import is_metered_ws

EGRESS_DENIED = "EGRESS_DENIED"
UNMETERED = "UNMETERED"


class Verdict(StrEnum):
    METERED = "metered"  # to the gate: reserve, forward, commit
    FREE = "free"  # a provider's free call
    WEBSOCKET = "websocket"  # to the WebSocket meter
    ALLOWED = "allowed"  # a policy rule allows it
    EGRESS_DENIED = EGRESS_DENIED
    UNMETERED = UNMETERED


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    match: providers.Match | None = None  # METERED
    family: str | None = None  # an LLM host's: the wire format a refusal is answered in

    @property
    def refused(self) -> bool:
        return self.verdict in (Verdict.EGRESS_DENIED, Verdict.UNMETERED)


def is_upgrade(method: str, upgrade: str | None) -> bool:
    return method == "GET" and upgrade is not None and upgrade.strip().lower() == "websocket"


def decide(
    policy: Policy, catalogue: tuple[providers.Provider, ...], method: str, host: str, path: str,
    upgrade: str | None = None,
) -> Decision:  # fmt: skip
    family = providers.refusal_family(host, catalogue)
    if family is None:
        allowed = policy.rule_for(host, method, path) is not None
        return Decision(Verdict.ALLOWED if allowed else Verdict.EGRESS_DENIED)
    if is_upgrade(method, upgrade):
        if is_metered_ws(host, path):
            return Decision(Verdict.WEBSOCKET, family=family)
    else:
        match = providers.classify(host, path, catalogue)
        if match is not None and match.free:
            return Decision(Verdict.FREE, family=family)
        if match is not None and method == "POST":
            return Decision(Verdict.METERED, match, family)
    rule = policy.rule_for(host, method, path)
    if rule is not None and rule.unmetered:
        return Decision(Verdict.ALLOWED, family=family)
    return Decision(Verdict.UNMETERED, family=family)


def decide_connection(policy: Policy, catalogue: tuple[providers.Provider, ...], host: str) -> Decision:
    """A connection that is not HTTP (raw TCP through CONNECT): allowed only by a rule for the whole
    host; on an LLM host, only with ``unmetered: allow`` (nothing there is metered)."""
    family = providers.refusal_family(host, catalogue)
    rules = policy.host_rules(host)
    if family is not None:
        ok = any(r.unmetered for r in rules)
        return Decision(Verdict.ALLOWED if ok else Verdict.UNMETERED, family=family)
    return Decision(Verdict.ALLOWED if rules else Verdict.EGRESS_DENIED)
