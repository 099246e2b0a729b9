"""Prometheus metrics of `bbnet serve`: one private registry, thin hooks, a host-only listener.

The planes call the module-level hooks (:func:`deny`, :func:`refusal`, :func:`cutoff`, ...) where
things happen; each is a no-op until :func:`enable` (``bbnet serve`` with ``metrics.enabled``), and
a counter increment when on (a few µs: bench/metrics_bench.py). Usage, reservations and ledger
latency are not hooked in the meter at all: :func:`instrument` wraps a ledger's reserve, commit,
release, renew, sweep and write_batch (group commit) calls, so whatever backend stands behind the
repository API is timed and counted the same way. Pools and reservations in flight are read from
the ledger when ``/metrics`` is scraped (:class:`LedgerGauges`).

Label values are bounded: providers come from the catalogue, bottles are validated names of
bottles that exist, codes and policies are fixed sets, thresholds come from the settings file. No
model string, URL, host or agent header is ever a label. Names follow the OpenTelemetry GenAI
semantic conventions where one exists (``gen_ai_client_token_usage``,
``gen_ai_client_operation_duration_seconds``); the rest are ``bbnet_*``. README's "Metrics and
soft limits" section lists every metric.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bbnet.model import (
    MICROS_PER_USD,
    Admission,
    Commit,
    CommitResult,
    ReserveRequest,
    ReserveResult,
    StakeReserve,
    UsageRecord,
    Write,
    Written,
)
from bbnet.store import LedgerError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from bbnet.ledger import Ledger

log = logging.getLogger("bbnet.metrics")

# OpenTelemetry GenAI's advised buckets: tokens per call (powers of 4) and seconds per call
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
CALL_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
LEDGER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
CUTOFF_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)
#: ``bbnet_tokens_total``'s ``type``: input and output are the totals budgets count; cache_write and
#: cache_read are parts of input, reasoning a part of output (never sum across all types).
TOKEN_PARTS = (("cache_write", "cache_write_tokens"), ("cache_read", "cache_read_tokens"),
               ("reasoning", "reasoning_tokens"))  # fmt: skip
LEDGER_OPS = {"reserve": "reserve", "commit": "commit", "release": "release", "renew": "renew",
              "sweep_expired": "sweep", "write_batch": "batch"}  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Every metric ``bbnet serve`` exports, in its own registry (never the library's global one)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls = Counter("bbnet_calls", "Metered calls committed (one per usage row)",
                             ["provider", "bottle", "estimated"], registry=r)  # fmt: skip
        self.tokens = Counter("bbnet_tokens", "Tokens of committed calls, by type",
                              ["provider", "bottle", "type"], registry=r)  # fmt: skip
        self.cost = Counter("bbnet_cost_usd", "Cost in USD of committed calls (priced models only)",
                            ["provider", "bottle"], registry=r)  # fmt: skip
        self.token_usage = Histogram("gen_ai_client_token_usage", "Tokens per call (OpenTelemetry GenAI)",
                                     ["gen_ai_provider_name", "gen_ai_token_type"], buckets=TOKEN_BUCKETS,
                                     registry=r)  # fmt: skip
        self.call_duration = Histogram("gen_ai_client_operation_duration_seconds",
                                       "Seconds from the request to the end of its answer (OpenTelemetry GenAI)",
                                       ["gen_ai_provider_name"], buckets=CALL_BUCKETS, registry=r)  # fmt: skip
        self.reservations = Counter("bbnet_reservations", "Reservations decided by the gate, by outcome",
                                    ["provider", "outcome"], registry=r)  # fmt: skip
        self.denies = Counter("bbnet_denies", "Metered calls the meter answered itself, by bbnet_code",
                              ["code", "provider"], registry=r)  # fmt: skip
        self.refusals = Counter("bbnet_unmetered_refusals", "Requests the egress policy refused, by code",
                                ["code"], registry=r)  # fmt: skip
        self.fail_open = Counter("bbnet_fail_open_calls", "Calls forwarded unmetered under BBNET_FAIL_OPEN",
                                 ["provider"], registry=r)  # fmt: skip
        self.lost = Counter("bbnet_lost_calls", "Expired reservations billed as lost calls (a meter died)",
                            ["bottle"], registry=r)  # fmt: skip
        self.cutoffs = Counter("bbnet_cutoffs", "Bottles the controller stopped for a budget, by policy",
                               ["bottle", "policy"], registry=r)  # fmt: skip
        self.cutoff_latency = Histogram("bbnet_cutoff_latency_seconds",
                                        "Seconds from the meter noticing a spent pool to the kernel cut",
                                        ["policy"], buckets=CUTOFF_BUCKETS, registry=r)  # fmt: skip
        self.ledger_ops = Histogram("bbnet_ledger_operation_duration_seconds", "Seconds per ledger operation",
                                    ["op"], buckets=LEDGER_BUCKETS, registry=r)  # fmt: skip
        self.batch_writes = Histogram("bbnet_ledger_batch_writes", "Writes per group commit of the meter's ledger"
                                      " writes (commits, releases and the reserve they came with)",
                                      buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.soft_limits = Counter("bbnet_soft_limit_alerts", "Soft-limit alerts raised, by threshold",
                                   ["threshold"], registry=r)  # fmt: skip
        self.webhooks = Counter("bbnet_webhook_deliveries", "Soft-limit webhooks, by result (ok | failed)",
                                ["result"], registry=r)  # fmt: skip
        self._series: dict[tuple[str, str], _Series] = {}
        self._outcomes: dict[tuple[str, str], Counter] = {}

    def observe_commit(self, usage: UsageRecord, result: CommitResult) -> None:
        if not result.recorded:  # a retried commit: its usage row was counted the first time
            return
        c = self._series.get((usage.provider, usage.bottle)) or self._bind(usage.provider, usage.bottle)
        (c.estimated if usage.estimated else c.measured).inc()
        c.input.inc(usage.input_tokens)
        c.output.inc(usage.output_tokens)
        for (_, attr), counter in zip(TOKEN_PARTS, c.parts, strict=True):
            if n := getattr(usage, attr):
                counter.inc(n)
        if result.cost_usd:
            c.cost.inc(result.cost_usd)
        c.input_usage.observe(usage.input_tokens)
        c.output_usage.observe(usage.output_tokens)
        if usage.latency_ms is not None:
            c.duration.observe(usage.latency_ms / 1000)

    def _bind(self, provider: str, bottle: str) -> _Series:
        """A (provider, bottle)'s series, looked up once: a commit then costs no label lookups."""
        p, b = provider, bottle
        series = self._series[(p, b)] = _Series(
            self.calls.labels(p, b, "false"), self.calls.labels(p, b, "true"),
            self.tokens.labels(p, b, "input"), self.tokens.labels(p, b, "output"),
            tuple(self.tokens.labels(p, b, kind) for kind, _ in TOKEN_PARTS), self.cost.labels(p, b),
            self.token_usage.labels(p, "input"), self.token_usage.labels(p, "output"),
            self.call_duration.labels(p),
        )  # fmt: skip
        return series

    def observe_batch(self, writes: Sequence[Write], results: Sequence[Written]) -> None:
        """A group commit's size, and what each of its reserves and commits decided."""
        self.batch_writes.observe(len(writes))
        for write, result in zip(writes, results, strict=True):
            if isinstance(write, ReserveRequest) and isinstance(result, ReserveResult):
                self.observe_reserve(write.provider, result)
            elif isinstance(write, StakeReserve) and isinstance(result, Admission):
                self.observe_reserve(write.req.provider, result.result)
            elif isinstance(write, Commit) and isinstance(result, CommitResult):
                self.observe_commit(write.usage, result)

    def observe_reserve(self, provider: str, result: ReserveResult) -> None:
        key = (provider, result.outcome.value)
        counter = self._outcomes.get(key) or self._outcomes.setdefault(key, self.reservations.labels(*key))
        counter.inc()


@dataclass(frozen=True)
class _Series:
    measured: Counter
    estimated: Counter
    input: Counter
    output: Counter
    parts: tuple[Counter, ...]  # TOKEN_PARTS' order
    cost: Counter
    input_usage: Histogram
    output_usage: Histogram
    duration: Histogram


_active: Metrics | None = None


def enable() -> Metrics:
    """Turn the hooks on (``bbnet serve``); a fresh registry each time."""
    global _active
    _active = Metrics()
    return _active


def disable() -> None:
    global _active
    _active = None


# -- hooks: each a no-op while metrics are off -------------------------------------------------


def deny(code: str, provider: str) -> None:
    if (m := _active) is not None:
        m.denies.labels(code, provider).inc()


def admitted(provider: str, result: ReserveResult) -> None:
    """A call the meter admitted from its stake, with no ledger write (meter/stake.py)."""
    if (m := _active) is not None:
        m.observe_reserve(provider, result)


def refusal(code: str) -> None:
    if (m := _active) is not None:
        m.refusals.labels(code).inc()


def fail_open(provider: str) -> None:
    if (m := _active) is not None:
        m.fail_open.labels(provider).inc()


def cutoff(bottle: str, policy: str, seconds: float) -> None:
    if (m := _active) is not None:
        m.cutoffs.labels(bottle, policy).inc()
        m.cutoff_latency.labels(policy).observe(seconds)


def soft_limit(threshold: int) -> None:
    if (m := _active) is not None:
        m.soft_limits.labels(str(threshold)).inc()


def webhook(ok: bool) -> None:
    if (m := _active) is not None:
        m.webhooks.labels("ok" if ok else "failed").inc()


# -- the ledger: timed and counted by wrapping its calls ---------------------------------------


def instrument(ledger: Ledger, m: Metrics) -> Ledger:
    """Time ``ledger``'s budget operations into ``m`` and count what they decided; returns it.

    The wrappers are set on the instance (the class, and every other ledger, is untouched)."""
    for name, op in LEDGER_OPS.items():
        setattr(ledger, name, _timed(getattr(ledger, name), m, op))
    return ledger


def _timed(call: Callable[..., Any], m: Metrics, op: str) -> Callable[..., Any]:
    hist = m.ledger_ops.labels(op)

    @functools.wraps(call)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            out = call(*args, **kwargs)
        finally:
            hist.observe(time.perf_counter() - started)
        if op == "reserve":
            m.observe_reserve(args[0].provider, out)
        elif op == "commit":
            m.observe_commit(args[1], out)
        elif op == "batch":
            m.observe_batch(args[0], out)
        elif op == "sweep":
            for bottle, result in out:
                if result.recorded:
                    m.lost.labels(bottle).inc()
        return out

    return timed


class LedgerGauges(Collector):
    """Gauges read from the ledger at scrape time: every budget's pool and the reservations in
    flight. A ledger that cannot be read leaves them out of that scrape (and says so in the log)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def describe(self) -> list[Any]:
        return []  # nothing to check for name clashes at registration: these names are our own

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pools = self.ledger.pools()
            in_flight = len(self.ledger.reservations())
        except LedgerError as e:
            log.warning("metrics: the ledger cannot be read: %s", e)
            return
        labels = ["scope", "provider", "unit", "period"]
        families = {
            name: GaugeMetricFamily(name, doc, labels=labels)
            for name, doc in (
                ("bbnet_pool_limit", "A budget's limit in its unit (tokens, or USD)"),
                ("bbnet_pool_used", "A budget's pool: used in its current period (tokens, or USD)"),
                ("bbnet_pool_reserved", "A budget's pool: held by calls in flight (tokens, or USD)"),
            )
        }
        for p in pools:
            scale = MICROS_PER_USD if p.unit == "usd" else 1
            values = [p.scope, p.provider, p.unit, p.period]
            families["bbnet_pool_limit"].add_metric(values, p.limit / scale)
            families["bbnet_pool_used"].add_metric(values, p.used / scale)
            families["bbnet_pool_reserved"].add_metric(values, p.reserved / scale)
        yield from families.values()
        yield GaugeMetricFamily(
            "bbnet_reservations_in_flight", "Reservations held by calls in flight", value=in_flight
        )


class Listener:
    """``/metrics`` over HTTP on its own thread (prometheus_client's server), for the life of serve."""

    def __init__(self, m: Metrics, host: str, port: int) -> None:
        server: WSGIServer
        server, _thread = start_http_server(port, addr=host, registry=m.registry)
        self._server = server
        self.address = f"{host}:{server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
