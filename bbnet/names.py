"""Validated names: bottles, agents, budget scopes and nodes (hosts).

Every name that can reach an nftables rule, an interface name, a cgroup path or a SQL row goes
through here first, so nothing downstream ever sees an unchecked string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOTTLE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NODE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class NameError_(ValueError):
    """A bottle, agent or scope name that is not allowed."""


def _checked(value: str, pattern: re.Pattern[str], what: str, rule: str) -> str:
    """Return ``value`` if it matches ``pattern``, else raise naming ``what`` and the ``rule`` it broke."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise NameError_(f"invalid {what} {value!r}: {rule}")
    return value


def bottle_name(value: str) -> str:
    return _checked(value, BOTTLE_NAME_RE, "bottle name",
                    "use 1-32 characters, lowercase letters, digits and '-', starting with a letter or digit")  # fmt: skip


def agent_name(value: str) -> str:
    return _checked(
        value, AGENT_NAME_RE, "agent name", "use 1-64 characters, letters, digits, '.', '_' and '-'"
    )


def node_name(value: str) -> str:
    """A host's name in the ledger (``node``): a DNS label, as a host name's first part is."""
    return _checked(value, NODE_NAME_RE, "node name",
                    "use 1-63 characters, lowercase letters, digits and '-', starting and ending with a letter"
                    " or digit")  # fmt: skip


@dataclass(frozen=True, order=True)
class Scope:
    """A node of the budget tree: ``global``, ``bottle:<name>`` or ``agent:<bottle>/<agent>``."""

    kind: str  # "global" | "bottle" | "agent"
    bottle: str = ""
    agent: str = ""

    def __str__(self) -> str:
        if self.kind == "global":
            return "global"
        if self.kind == "bottle":
            return f"bottle:{self.bottle}"
        return f"agent:{self.bottle}/{self.agent}"

    @staticmethod
    def global_() -> Scope:
        return Scope("global")

    @staticmethod
    def of_bottle(name: str) -> Scope:
        return Scope("bottle", bottle_name(name))

    @staticmethod
    def of_agent(bottle: str, agent: str) -> Scope:
        return Scope("agent", bottle_name(bottle), agent_name(agent))

    @staticmethod
    def parse(text: str) -> Scope:
        """Parse ``global``, ``bottle:NAME`` (or a bare bottle NAME) or ``agent:BOTTLE/AGENT``."""
        if text == "global":
            return Scope.global_()
        if text.startswith("agent:"):
            rest = text[len("agent:") :]
            bottle, sep, agent = rest.partition("/")
            if not sep:
                raise NameError_(f"invalid scope {text!r}: expected agent:BOTTLE/AGENT")
            return Scope.of_agent(bottle, agent)
        if text.startswith("bottle:"):
            return Scope.of_bottle(text[len("bottle:") :])
        if ":" in text or "/" in text:
            raise NameError_(f"invalid scope {text!r}: expected global, bottle:NAME or agent:BOTTLE/AGENT")
        return Scope.of_bottle(text)
