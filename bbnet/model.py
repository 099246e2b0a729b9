"""Plain data shared by every plane: what the ledger stores and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bbnet.names import Scope

UNITS = ("tokens", "usd")
PERIODS = ("total", "day", "week", "month")
POLICIES = ("cutoff", "freeze", "kill")
STATES = ("open", "cutoff", "frozen", "killed")
MICROS_PER_USD = 1_000_000


@dataclass(frozen=True)
class Bottle:
    name: str
    parent: str | None = None
    netns: str | None = None
    veth: str | None = None  # host end of the veth pair
    addresses: tuple[str, ...] = ()  # bottle-side addresses (CIDR)
    cgroup: str | None = None  # absolute cgroup v2 path
    policy: str = "cutoff"
    managed: bool = False  # bbnet made the netns/veth (and removes them on kill/rm)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    removed_at: float | None = None


@dataclass(frozen=True)
class Budget:
    scope: Scope
    provider: str  # provider key or "*"
    unit: str  # tokens | usd
    limit: int  # tokens, or micro-USD
    period: str = "total"
    source: str = "cli"  # settings | cli | launch


@dataclass(frozen=True)
class PoolView:
    """A budget's counters in its current (or a given) period."""

    scope: str
    provider: str
    unit: str
    period: str
    period_start: float
    limit: int
    used: int
    reserved: int
    slice_open: bool = False  # a fleet pool's slice (limit) the fleet can still top up: not exhausted

    @property
    def remaining(self) -> int:
        return self.limit - self.used - self.reserved

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit and not self.slice_open


@dataclass(frozen=True)
class Rates:
    """Projected price of a call, in micro-USD per token; None where the model is unpriced."""

    input_micros: float
    output_micros: float


class Outcome(StrEnum):
    ALLOW = "allow"
    DEGRADE = "degrade"
    DENY = "deny"


@dataclass(frozen=True)
class ReserveRequest:
    key: str  # idempotency key (the flow id)
    bottle: str
    agent: str
    provider: str
    model: str | None
    input_tokens: int  # estimate
    max_output_tokens: int  # what the request asks for (or the model's cap)
    rates: Rates | None = None  # None: the model is unpriced; USD pools are not charged
    lease_seconds: float = 300.0
    min_output_tokens: int = 1  # a DEGRADE below this is a DENY


@dataclass(frozen=True)
class ReserveResult:
    outcome: Outcome
    key: str
    tokens: int = 0  # tokens held (input + allowed output)
    usd_micros: int = 0
    allowed_output_tokens: int = 0
    governing: PoolView | None = None  # the pool that limited (DEGRADE) or refused (DENY)
    exhausted: bool = False  # DENY because real usage left no room (not just in-flight holds)
    needed: int = 0  # DENY: the least this call needs in the governing pool's unit (input + min output)


@dataclass(frozen=True)
class UsageRecord:
    bottle: str
    agent: str
    provider: str
    model: str | None
    input_tokens: int = 0  # all input, cache writes and reads included
    output_tokens: int = 0  # all output, reasoning included
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    family: str | None = None
    host: str | None = None
    path: str | None = None
    estimated: bool = False
    stream: bool = False
    status: int | None = None
    latency_ms: float | None = None
    ts: float | None = None  # default: now
    lost: bool = False  # its meter died mid-call: billed from the reservation (estimated too)
    node: str | None = None  # the host that metered it; default: the ledger connection's node

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class CommitResult:
    recorded: bool  # False: a usage row with this key already existed; nothing changed
    key: str
    cost_usd: float | None = None  # None: unpriced model
    exhausted: tuple[PoolView, ...] = ()  # pools on the path whose used >= limit after this commit


@dataclass(frozen=True)
class Commit:
    """A commit in a batch of ledger writes (``Ledger.write_batch``)."""

    key: str
    usage: UsageRecord
    #: the meter's stake its hold came from (bbnet/stakes.py); None: a reservation row
    stake: str | None = None
    holds: tuple[tuple[int, int], ...] = ()  # with a stake: (pool id, amount) the call holds in it


@dataclass(frozen=True)
class StakeReserve:
    """A reserve against a meter's stake (bbnet/stakes.py): decided like ``Ledger.reserve`` with the
    stake's unheld amounts (``free``, pool id -> amount, as the meter counts them) as room, the hold
    taken from the stake, and the stake grown for the calls to come when the pools have room."""

    req: ReserveRequest
    stake: str
    free: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Admission:
    """A :class:`StakeReserve`'s answer."""

    result: ReserveResult
    holds: tuple[tuple[int, int], ...] | None  # the call's hold in the stake; None: it has a reservation row
    free: tuple[tuple[int, int], ...]  # the stake's unheld amounts in the path's pools, after this
    path: tuple[tuple[int, str], ...]  # the path's pools (id, unit), root first
    until: float  # the path stands until then (its periods' end), and while ``stamp`` does
    stamp: tuple[int, int] | None  # the ledger's data_version and plan generation then; None: never reuse


@dataclass(frozen=True)
class StakeTopUp:
    """Set a meter's stake in one path's pools to the free room a call holding ``holds`` would
    leave it (bbnet/stakes.py), written with the meter's commits after an answer, so the calls to
    come are still admitted in memory instead of one in so many going to the ledger for room."""

    stake: str
    bottle: str
    agent: str | None
    provider: str
    holds: tuple[tuple[int, int], ...]  # (pool id, amount) of the call the room is sized for
    #: the stake's unheld amounts in the path's pools, as the meter counts them
    free: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class StakeFree:
    """A :class:`StakeTopUp`'s answer: the stake's unheld amounts in the path's pools now."""

    free: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Release:
    """A release in a batch of ledger writes: the call's hold goes back to its pools."""

    key: str


#: One write of a batch, and what it gave: a reserve's or commit's result, a release's "was there
#: a hold", or the LedgerError that write got (the batch's other writes stand).
type Write = ReserveRequest | StakeReserve | StakeTopUp | Commit | Release
type Written = ReserveResult | Admission | StakeFree | CommitResult | bool | Exception


@dataclass(frozen=True)
class DesiredState:
    bottle: str
    state: str  # open | cutoff | frozen | killed
    reason: str = ""
    actor: str = ""
    updated_at: float = 0.0


@dataclass(frozen=True)
class Action:
    id: int
    ts: float
    bottle: str | None
    action: str  # cutoff | restore | freeze | thaw | kill | drift-repair | ...
    actor: str  # operator:<user> | controller | meter | cli
    reason: str
    result: str  # ok | error: ...
    duration_ms: float | None = None
    detail: str | None = None  # JSON
