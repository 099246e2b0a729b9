"""Host settings: ``/etc/bbnet/settings.yml`` parsed with PyYAML into validated pydantic models.

A bad file is one clear error naming the file, the key path and what was expected; nothing is
started and nothing is written. A missing file means the documented defaults.
"""

from __future__ import annotations

import ipaddress
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bbnet.defaults import DEFAULT_ADDRESS_POOL, DEFAULT_DB, DEFAULT_PROXY_PORT
from bbnet.egress import PolicyDoc
from bbnet.limits import SettingsError
from bbnet.model import MICROS_PER_USD, Budget
from bbnet.names import Scope, node_name
from bbnet.providers import PROVIDER_KEYS, Provider, openai_compatible

DEFAULT_SETTINGS = "/etc/bbnet/settings.yml"
Period = Literal["total", "day", "week", "month"]
Policy = Literal["cutoff", "freeze", "kill"]


def default_path() -> str:
    return os.environ.get("BBNET_SETTINGS") or DEFAULT_SETTINGS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Percent = Annotated[int, Field(ge=1, le=100)]


def _thresholds(v: list[int] | None) -> list[int] | None:
    if v is not None and len(set(v)) != len(v):
        raise ValueError("each soft limit (a percent of the limit) may be given once")
    return None if v is None else sorted(v)


class PoolSpec(_Strict):
    limit: Annotated[int, Field(ge=0)]
    period: Period | None = None  # None: the file's default `period`
    soft_limits: list[Percent] | None = None  # None: the file's default `soft_limits`

    _sorted = field_validator("soft_limits")(_thresholds)


TokenLimits = dict[str, Annotated[int, Field(ge=0)] | PoolSpec]


class UsdSettings(_Strict):
    global_: Annotated[Decimal | None, Field(alias="global", ge=0)] = None
    bottle_default: Annotated[Decimal | None, Field(ge=0)] = None
    period: Period = "month"
    soft_limits: list[Percent] | None = None  # None: the file's default `soft_limits`

    _sorted = field_validator("soft_limits")(_thresholds)


def _host_port(v: str, what: str) -> tuple[str, int]:
    host, sep, port = v.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected {what} as ADDRESS:PORT with an IP address, e.g. 127.0.0.1:9464") from None
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected {what} as ADDRESS:PORT with a port from 1 to 65535")
    return host, int(port)


class MetricsSettings(_Strict):
    """``/metrics`` (Prometheus text) on its own listener; loopback by default: bottles reach only
    the meter's port on the host, and nothing off the host should read it either."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host_port(v, "the metrics listener")
        return v

    def address(self) -> tuple[str, int]:
        return _host_port(self.listen, "the metrics listener")


class WebhookSettings(_Strict):
    """Where soft-limit alerts are POSTed (JSON). The URL may carry credentials (userinfo or a token
    in the query): it is never logged nor written to the ledger."""

    url: str
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0  # seconds, per attempt
    attempts: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in v):
            raise ValueError("expected an http:// or https:// URL")  # never echo it: it may hold a secret
        return v


class ExtraProvider(_Strict):
    """An OpenAI-compatible host to meter, beyond the built-in catalogue."""

    key: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    host: Annotated[str, Field(pattern=r"^[a-z0-9.-]+$")]
    price_provider: str | None = None

    def provider(self) -> Provider:
        return openai_compatible(self.key, self.host, self.price_provider)


def _ledger_url(v: str) -> str:
    if not v.startswith(("postgresql://", "postgres://", "/")):
        raise ValueError("expected a postgresql:// URL or an absolute file path")
    if not v.startswith("/"):
        from bbnet.pg import check_url  # psycopg: only for a PostgreSQL ledger

        check_url(v)
    return v


class FleetSettings(_Strict):
    """Global budgets shared by every host on one fleet database (bbnet/fleet.py)."""

    url: str  # postgresql://user:password@host/db (or a SQLite file shared by the hosts)
    slice_tokens: Annotated[int | None, Field(gt=0)] = None  # default: slice_fraction of the limit
    slice_usd: Annotated[Decimal | None, Field(gt=0)] = None
    slice_fraction: Annotated[float, Field(gt=0, le=1)] = 0.05
    low_water: Annotated[float, Field(ge=0, le=1)] = 0.5
    lease_seconds: Annotated[float, Field(gt=0, le=86400)] = 30.0
    settle_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    idle_seconds: Annotated[float, Field(gt=0, le=86400)] = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _ledger_url(v)


class LedgerSettings(_Strict):
    """Where the ledger is (``--db`` and ``BBNET_DB`` win): a SQLite file or a ``postgresql://`` URL."""

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _ledger_url(v)


class Settings(_Strict):
    budget: TokenLimits = {}
    bottle_defaults: TokenLimits = {}
    usd: UsdSettings = UsdSettings()
    period: Period = "total"
    shutdown: Policy = "cutoff"
    fail_open: bool = False
    auto_restore_on_new_period: bool = False
    lease_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
    stakes: bool = True  # the meter admits calls from a stake in a SQLite ledger (bbnet/stakes.py)
    address_pool: str = DEFAULT_ADDRESS_POOL
    proxy_port: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_PROXY_PORT
    providers: list[ExtraProvider] = []
    egress: PolicyDoc = PolicyDoc()  # the host default; absent: the LLM providers only
    fleet: FleetSettings | None = None  # absent: global budgets are this host's alone
    ledger: LedgerSettings = LedgerSettings()
    node: str | None = None  # this host's name in usage rows; None: the machine's host name

    @field_validator("node")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        return None if v is None else node_name(v)

    def ledger_target(self, db: str | None) -> str:
        """The ledger to open: ``--db``/``BBNET_DB`` if given, else ``ledger.url``, else the default file."""
        return db or self.ledger.url or DEFAULT_DB

    metrics: MetricsSettings = MetricsSettings()
    soft_limits: list[Percent] = []  # percents of a pool's limit that alert once per period
    webhook: WebhookSettings | None = None

    _sorted = field_validator("soft_limits")(_thresholds)

    @field_validator("address_pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"not a network in CIDR form: {e}") from None
        if net.version != 4 or net.prefixlen > 28:
            raise ValueError("expected an IPv4 network of /28 or larger")
        return v

    @model_validator(mode="after")
    def _known_providers(self) -> Settings:
        known = self.provider_keys()
        for section in ("budget", "bottle_defaults"):
            for key in getattr(self, section):
                if key not in known:
                    raise ValueError(
                        f"{section}.{key}: unknown provider; expected one of {', '.join(sorted(known))}"
                    )
        return self

    def provider_keys(self) -> frozenset[str]:
        return PROVIDER_KEYS | {p.key for p in self.providers}

    def extra_providers(self) -> tuple[Provider, ...]:
        return tuple(p.provider() for p in self.providers)

    def _token_budgets(self, scope: Scope, limits: TokenLimits, source: str) -> list[Budget]:
        out = []
        for provider, spec in sorted(limits.items()):
            limit, period = (spec, None) if isinstance(spec, int) else (spec.limit, spec.period)
            out.append(Budget(scope, provider, "tokens", limit, period or self.period, source))
        return out

    def global_budgets(self) -> list[Budget]:
        """The global pools the file asks for (source ``settings``)."""
        budgets = self._token_budgets(Scope.global_(), self.budget, "settings")
        if self.usd.global_ is not None:
            micros = int(self.usd.global_ * MICROS_PER_USD)
            budgets.append(Budget(Scope.global_(), "*", "usd", micros, self.usd.period, "settings"))
        return budgets

    def launch_budgets(self, bottle: str) -> list[Budget]:
        """The pools a new bottle gets unless its launch says otherwise (source ``launch``)."""
        budgets = self._token_budgets(Scope.of_bottle(bottle), self.bottle_defaults, "launch")
        if self.usd.bottle_default is not None:
            micros = int(self.usd.bottle_default * MICROS_PER_USD)
            budgets.append(Budget(Scope.of_bottle(bottle), "*", "usd", micros, self.usd.period, "launch"))
        return budgets


def _describe(err: ValidationError) -> str:
    # In a union (a limit is a number or {limit, period}) the deepest error is the one that matters.
    # An unknown key comes first: a misspelt key also shows up as the right one missing.
    e = max(err.errors(), key=lambda x: (x["type"] == "extra_forbidden", len(x["loc"])))
    where = ".".join(str(p) for p in e["loc"] if str(p) not in ("constrained-int", "int", "PoolSpec"))
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{where}: {msg}" if where else msg


def _document(text: str, source: str, what: str) -> dict[str, object]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"{source}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: expected a mapping of {what} at the top level")
    return raw


def parse(text: str, source: str = "<settings>") -> Settings:
    try:
        return Settings.model_validate(_document(text, source, "settings"))
    except ValidationError as e:
        raise SettingsError(f"{source}: {_describe(e)}") from None


def parse_policy(text: str, source: str = "<policy>") -> PolicyDoc:
    """An egress policy file (the shape of settings' ``egress:`` section)."""
    try:
        return PolicyDoc.model_validate(_document(text, source, "egress policy"))
    except ValidationError as e:
        raise SettingsError(f"{source}: {_describe(e)}") from None


def load_policy(path: str | Path) -> PolicyDoc:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    return parse_policy(text, str(path))


def load(path: str | Path | None = None, *, required: bool = False) -> Settings:
    """Load settings; a missing file gives the defaults unless ``required``."""
    p = Path(path or default_path())
    try:
        text = p.read_text()
    except FileNotFoundError:
        if required:
            raise SettingsError(f"{p}: no such settings file") from None
        return Settings()
    except OSError as e:
        raise SettingsError(f"{p}: cannot read: {e.strerror}") from None
    return parse(text, str(p))


__all__ = ["Settings", "SettingsError", "default_path", "load", "load_policy", "parse", "parse_policy"]
