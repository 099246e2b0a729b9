"""Egress policy: what a bottle may reach besides the metered LLM APIs, in the spirit of Gateway
API's HTTPRoute — rules of hosts (exact, ``*.suffix`` or ``*``), optional path prefixes and
optional methods. Anything no rule allows is refused at the proxy.

The host default is the ``egress:`` section of the settings file; a bottle may carry its own
policy (``bbnet bottle egress``), which replaces the default for that bottle. Both have the shape
of :class:`PolicyDoc`; :func:`compile_policy` turns one into the :class:`Policy` the meter matches
requests against (pure, no pydantic on the hot path).

LLM provider hosts need no rule for their metered and free calls; a rule naming such a host with
``unmetered: allow`` is the explicit escape for its calls the meter cannot meter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: Named host sets for package registries and git hosts: ``presets: [pypi, github]``.
PRESETS: dict[str, tuple[str, ...]] = {
    "pypi": ("pypi.org", "files.pythonhosted.org"),
    "npm": ("registry.npmjs.org", "registry.yarnpkg.com"),
    "debian": ("deb.debian.org", "security.debian.org"),
    "ubuntu": ("archive.ubuntu.com", "security.ubuntu.com", "ports.ubuntu.com"),
    "crates": ("crates.io", "index.crates.io", "static.crates.io"),
    "go": ("proxy.golang.org", "sum.golang.org"),
    "github": (
        "github.com",
        "api.github.com",
        "codeload.github.com",
        "*.githubusercontent.com",
        "ghcr.io",
        "pkg-containers.githubusercontent.com",
    ),
    "gitlab": ("gitlab.com", "registry.gitlab.com"),
}
PresetName = Literal["pypi", "npm", "debian", "ubuntu", "crates", "go", "github", "gitlab"]

_HOST = re.compile(r"(?:\*|(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def _host(v: str) -> str:
    v = v.lower().rstrip(".")
    if not _HOST.fullmatch(v):
        raise ValueError(f"invalid host {v!r}: expected a host name, *.suffix or *")
    return v


def _path(v: str) -> str:
    if not v.startswith("/") or "?" in v or "#" in v:
        raise ValueError(f"invalid path prefix {v!r}: expected /something, without a query")
    return v


def _method(v: str) -> str:
    if v.upper() not in _METHODS:
        raise ValueError(f"invalid method {v!r}: expected one of {', '.join(sorted(_METHODS))}")
    return v.upper()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleDoc(_Strict):
    hosts: Annotated[list[Annotated[str, AfterValidator(_host)]], Field(min_length=1)]
    paths: list[Annotated[str, AfterValidator(_path)]] = []
    methods: list[Annotated[str, AfterValidator(_method)]] = []
    unmetered: Literal["allow", "deny"] = "deny"

    @model_validator(mode="after")
    def _named_escape(self) -> RuleDoc:
        if self.unmetered == "allow" and "*" in self.hosts:
            raise ValueError("unmetered: allow needs the hosts named, not '*'")
        return self


class PolicyDoc(_Strict):
    """A policy as written: in settings under ``egress:``, or a bottle's policy file."""

    presets: list[PresetName] = []
    allow: list[RuleDoc] = []


@dataclass(frozen=True)
class Rule:
    hosts: tuple[str, ...]
    paths: tuple[str, ...] = ()
    methods: frozenset[str] = frozenset()
    unmetered: bool = False

    def matches_host(self, host: str) -> bool:
        return any(host_matches(pattern, host) for pattern in self.hosts)

    def matches(self, host: str, method: str, path: str) -> bool:
        return (
            self.matches_host(host)
            and (not self.methods or method in self.methods)
            and (not self.paths or any(prefix_matches(p, path) for p in self.paths))
        )

    @property
    def whole_host(self) -> bool:
        """No path or method condition: the rule can allow a connection that is not HTTP."""
        return not self.paths and not self.methods


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()

    def rule_for(self, host: str, method: str, path: str) -> Rule | None:
        """The first rule that allows ``method host path`` (path without the query), or None."""
        host = host.lower().rstrip(".")
        return next((r for r in self.rules if r.matches(host, method, path)), None)

    def host_rules(self, host: str) -> tuple[Rule, ...]:
        """Rules that allow the whole host (for connections that are not HTTP)."""
        host = host.lower().rstrip(".")
        return tuple(r for r in self.rules if r.whole_host and r.matches_host(host))


def host_matches(pattern: str, host: str) -> bool:
    """``*`` any host; ``*.example.com`` any name under example.com (not example.com itself)."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def prefix_matches(prefix: str, path: str) -> bool:
    """HTTPRoute's PathPrefix: element-wise, so ``/api`` matches ``/api`` and ``/api/x``, not ``/apix``."""
    path = path.split("?", 1)[0]
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/") or (base == "" and path.startswith("/"))


def compile_policy(doc: PolicyDoc) -> Policy:
    rules = [Rule(PRESETS[name]) for name in doc.presets]
    rules += [
        Rule(tuple(r.hosts), tuple(r.paths), frozenset(r.methods), r.unmetered == "allow") for r in doc.allow
    ]
    return Policy(tuple(rules))


def describe(doc: PolicyDoc) -> str:
    """One line for an operator: what the policy allows besides the LLM providers."""
    parts = []
    if doc.presets:
        parts.append("presets " + ", ".join(doc.presets))
    if doc.allow:
        parts.append(f"{len(doc.allow)} rule{'s' if len(doc.allow) != 1 else ''}")
    return "LLM providers" + (" + " + "; ".join(parts) if parts else " only")
