"""Who is calling: the client's source address → the bottle that owns it.

Unforgeable because netrules drops spoofed sources on each bottle's veth. The address map and
the bottles' desired states and egress policies are cached and rebuilt only when another connection has written to
the ledger (``Ledger.data_version``: a PRAGMA on SQLite, the server snapshot on PostgreSQL), so the hot
path costs one cheap probe.
"""

from __future__ import annotations

import ipaddress

from bbnet.egress import Policy, PolicyDoc, compile_policy
from bbnet.ledger import Ledger
from bbnet.model import Bottle

AGENT_HEADER = "x-bbnet-agent"


class Directory:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._version: int | None = None
        self._by_address: dict[str, Bottle] = {}
        self._states: dict[str, str] = {}
        self._policies: dict[str, Policy] = {}

    def _refresh(self) -> None:
        version = self._ledger.data_version()
        if version == self._version:
            return
        by_address: dict[str, Bottle] = {}
        for bottle in self._ledger.bottles():
            for cidr in bottle.addresses:
                by_address[str(ipaddress.ip_interface(cidr).ip)] = bottle
        self._by_address = by_address
        self._states = {s.bottle: s.state for s in self._ledger.desired_states()}
        self._policies = {
            name: compile_policy(PolicyDoc.model_validate_json(text))
            for name, text in self._ledger.egress_policies().items()
        }
        self._version = version

    def lookup(self, address: str) -> tuple[Bottle | None, str]:
        """The bottle that owns ``address`` (None: no bottle) and its desired state."""
        self._refresh()
        bottle = self._by_address.get(address.removeprefix("::ffff:"))  # IPv4-mapped, as dual-stack reports
        return bottle, self._states.get(bottle.name, "open") if bottle else "open"

    def policy(self, bottle: str) -> Policy | None:
        """The bottle's own egress policy (None: the host default applies); call after :meth:`lookup`."""
        return self._policies.get(bottle)
