"""The controller: keeps the kernel equal to the ledger's desired state, and enforces budgets.

Level-triggered: on start and on a short period it compares what the kernel holds with what the
ledger wants and repairs the difference (someone flushed the ruleset: drift). Edge-assisted: the
meter wakes it the moment a commit leaves a pool exhausted, so the bottle's policy is applied
within milliseconds, not at the next poll. One thread owns the controller's ledger connection and
nftables context; other threads only put work on its queue.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass

from bbnet import metrics
from bbnet import soft_limits as soft
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import CommitResult, PoolView
from bbnet.settings import PoolSpec, Settings
from enforcer import cgroups
from enforcer.errors import EnforcerError
from enforcer.kernel import apply_all, apply_state
from enforcer.nft import Nft, NftError
from enforcer.spec import KernelBottle, cut_veths, kernel_bottle
from enforcer.webhook import Webhook
from netrules.types import RulesError

log = logging.getLogger("bbnet.controller")
ACTOR = "controller"
POLICY_STATE = {"cutoff": "cutoff", "freeze": "frozen", "kill": "killed"}
POLICY_ACTION = {"cutoff": "cutoff", "freeze": "freeze", "kill": "kill"}
BUDGET_REASON = "budget exhausted"
RECENT_CALLS = 20  # usage rows a bottle's smallest call is looked for in


def exhaustion_reason(pool: PoolView) -> str:
    unit = "micro-USD" if pool.unit == "usd" else "tokens"
    return f"{BUDGET_REASON}: {pool.scope} {pool.provider} used {pool.used} of {pool.limit} {unit} ({pool.period})"


def cut_reason(pool: PoolView, smallest: int | None, needed: int = 0) -> str | None:
    """Why a bottle that hit ``pool`` is cut off, or None when it is not (pure).

    A pool spent by real usage always cuts. A DENY with room left cuts only if what remains is less
    than the bottle's smallest recent call (``smallest``, in the pool's unit): one oversized call
    — or an input estimate that runs high — does not take the bottle off the network while its
    ordinary calls still fit. With no recent call to go by, the DENY's own ``needed`` decides, as
    the meter found (it reports the pool only when real usage cannot pay for that call).
    """
    base = exhaustion_reason(pool)
    if pool.exhausted:
        return base
    left = pool.limit - pool.used
    if smallest is None:
        return base + (
            f"; its next call needs ~{needed:,} and it has no recent call to go by" if needed else ""
        )
    if left >= smallest:
        return None
    return f"{base}; its smallest recent call needs {smallest:,}"


@dataclass(frozen=True)
class Exhausted:
    """Work for the controller thread: ``bottle`` hit ``pools``."""

    bottle: str
    pools: tuple[PoolView, ...]
    noticed: float  # time.monotonic() when the meter saw it
    needed: int = 0  # a DENY's: the least the refused call needed (0: a commit spent the pools)


class Controller:
    def __init__(self, ledger: Ledger, nft: Nft, settings: Settings, *, period: float = 0.25,
                 sweep_every: float = 5.0, restore_every: float = 10.0, grace: float = 0.05,
                 soft_every: float = 1.0, webhook: Webhook | None = None) -> None:  # fmt: skip
        self.ledger = ledger
        self.nft = nft
        self.settings = settings
        self.period = period
        self.sweep_every = sweep_every
        self.restore_every = restore_every
        self.grace = grace  # seconds a cut waits for the answer in flight (see enforce)
        self.soft_every = soft_every if has_soft_limits(settings) else 0.0  # 0: no soft limits to check
        self.webhook = webhook
        self._raised: set[soft.AlertKey] | None = None  # soft-limit alerts raised (read from the audit)
        self._queue: queue.Queue[Exhausted | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._version: int | None = None
        self._applied: dict[str, str] = {}

    # -- what other threads call ---------------------------------------------------------------

    def notify_commit(self, bottle: str, result: CommitResult) -> None:
        """The meter's commit hook: wake the controller if the commit exhausted a pool."""
        if result.exhausted:
            self._queue.put(Exhausted(bottle, result.exhausted, time.monotonic()))

    def notify_exhausted(self, bottle: str, pool: PoolView, needed: int = 0) -> None:
        """The meter's DENY hook: real usage already left no room in ``pool`` for a call that needed
        ``needed``; whether that cuts the bottle is :func:`cut_reason`'s call."""
        self._queue.put(Exhausted(bottle, (pool,), time.monotonic(), needed))

    def start(self) -> None:
        self.reconcile("start")
        self._thread = threading.Thread(target=self._run, name="bbnet-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    # -- the controller thread -----------------------------------------------------------------

    def _run(self) -> None:
        next_sweep = next_restore = next_soft = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=self.period)
            except queue.Empty:
                item = None
                idle = True
            else:
                idle = False
                if item is None:
                    return
            try:
                if isinstance(item, Exhausted):
                    self.enforce(item)
                    continue
                if idle:
                    self.tick()
                now = time.monotonic()
                if now >= next_sweep:
                    self.sweep()
                    next_sweep = now + self.sweep_every
                if now >= next_restore and self.settings.auto_restore_on_new_period:
                    self.restore_new_periods()
                    next_restore = now + self.restore_every
                if self.soft_every and now >= next_soft:
                    self.check_soft_limits()
                    next_soft = now + self.soft_every
            except (EnforcerError, LedgerError, RulesError, OSError) as e:
                log.error("controller: %s", e)

    def tick(self) -> None:
        """Level-triggered pass: apply desired-state changes, repair drift."""
        version = self.ledger.data_version()
        if version != self._version:
            try:
                self.apply_changes()
                self._version = version
            except NftError as e:  # bbnet's table itself is wrong: repair_drift puts it all back
                log.info("changes wait for the drift repair: %s", e)
        self.repair_drift()

    def _kernel_view(self) -> tuple[list[KernelBottle], dict[str, str]]:
        bottles = [kernel_bottle(b) for b in self.ledger.bottles()]
        states = {s.bottle: s.state for s in self.ledger.desired_states()}
        return bottles, states

    def reconcile(self, why: str) -> None:
        """Make the whole kernel state equal the ledger: the table, then frozen and killed bottles."""
        started = time.perf_counter()
        bottles, states = self._kernel_view()
        apply_all(self.nft, bottles, states)
        for b in bottles:
            if states.get(b.name) in ("frozen", "killed"):
                apply_state(self.nft, b, states[b.name])
        self._applied = dict(states)
        elapsed = (time.perf_counter() - started) * 1000
        self.ledger.record_action(None, "reconcile", ACTOR, why, "ok", elapsed, {"bottles": len(bottles)})
        log.info("reconciled %d bottles (%s) in %.1f ms", len(bottles), why, elapsed)

    def apply_changes(self) -> None:
        """Desired states written by someone else (the CLI applies its own; this is the safety net)."""
        bottles, states = self._kernel_view()
        known = {b.name for b in bottles}
        if known - set(self._applied):
            self._applied.update({name: "" for name in known - set(self._applied)})
        for b in bottles:
            want = states.get(b.name, "open")
            if self._applied.get(b.name) != want and b.net is not None:
                apply_state(self.nft, b, want)
                self._applied[b.name] = want

    def repair_drift(self) -> bool:
        """If bbnet's table is missing or differs from the ledger, put it back and say so."""
        bottles, states = self._kernel_view()
        live = [b for b in bottles if b.net is not None and states.get(b.name, "open") != "killed"]
        started = time.perf_counter()
        try:
            self.nft.verify([b.net for b in live if b.net is not None], cut_veths(live, states))
            frozen_ok = all(
                cgroups.is_frozen(b.cgroup) for b in bottles
                if states.get(b.name) == "frozen" and b.cgroup is not None and b.cgroup.exists()
            )  # fmt: skip
            if frozen_ok:
                return False
            problem = "a frozen bottle was thawed"
        except NftError as e:
            problem = str(e)
        self.reconcile("drift")
        elapsed = (time.perf_counter() - started) * 1000
        self.ledger.record_action(None, "drift-repair", ACTOR, problem, "ok", elapsed)
        log.warning("drift repaired in %.1f ms: %s", elapsed, problem)
        return True

    def enforce(self, item: Exhausted) -> None:
        """Apply each target bottle's policy (see :func:`targets`, :func:`cut_reason`), audited with
        the pool that tripped and why.

        Waits until ``grace`` after the meter noticed: the answer that spent the pool (or the 429
        that found it spent) is still on its way to the bottle, and the cut would drop it.
        """
        wait = item.noticed + self.grace - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        parents = {b.name: b.parent for b in self.ledger.bottles()}
        for pool, name in [(p, n) for p in item.pools for n in targets(p, item.bottle, parents)]:
            if self.ledger.desired_state(name).state != "open":
                continue
            bottle = self.ledger.get_bottle(name)
            if bottle is None:
                continue
            smallest = self.ledger.smallest_recent_call(name, pool.provider, pool.unit, RECENT_CALLS)
            why = cut_reason(pool, smallest, item.needed)
            if why is None:
                log.info("%s stays open: %s %s has %d left, its smallest recent call needs %d", name,
                         pool.scope, pool.provider, pool.limit - pool.used, smallest)  # fmt: skip
                continue
            state = POLICY_STATE[bottle.policy]
            reason = why
            self.ledger.set_desired_state(name, state, reason, ACTOR)
            started = time.perf_counter()
            try:
                closed = apply_state(self.nft, kernel_bottle(bottle), state)
            except (EnforcerError, RulesError) as e:
                self.ledger.record_action(name, POLICY_ACTION[bottle.policy], ACTOR, reason, f"error: {e}")
                raise
            self._applied[name] = state
            waited = (time.monotonic() - item.noticed) * 1000
            metrics.cutoff(name, bottle.policy, waited / 1000)
            self.ledger.record_action(
                name, POLICY_ACTION[bottle.policy], ACTOR, reason, "ok", (time.perf_counter() - started) * 1000,
                {"scope": pool.scope, "provider": pool.provider, "unit": pool.unit, "limit": pool.limit,
                 "used": pool.used, "smallest_recent_call": smallest, "needed": item.needed or None,
                 "noticed_to_applied_ms": round(waited, 3), "connections_closed": closed},
            )  # fmt: skip
            log.warning("%s %s: %s (%.1f ms after the commit)", bottle.policy, name, reason, waited)

    def sweep(self) -> None:
        """Bill expired leases as lost calls; one that spends a pool cuts its bottle like a commit."""
        lost = self.ledger.sweep_expired()
        if lost:
            log.warning("billed %d expired reservations as lost calls (their meter died)", len(lost))
        for bottle, result in lost:
            if result.exhausted:
                self.enforce(Exhausted(bottle, result.exhausted, time.monotonic()))

    def check_soft_limits(self) -> None:
        """Raise each soft-limit alert a pool is due (:func:`bbnet.soft_limits.crossed`): audited
        first — the row is what keeps it from being raised again, here or after a restart — then
        handed to the webhook's worker thread, so a slow receiver never holds enforcement up."""
        if self._raised is None:
            rows = self.ledger.actions_named(soft.ACTION)
            keys = (soft.key_of(json.loads(a.detail or "{}")) for a in rows if a.result == "ok")
            self._raised = {k for k in keys if k is not None}
        for pool in self.ledger.pools():
            for alert in soft.crossed(pool, soft.thresholds_for(self.settings, pool), self._raised):
                payload = alert.payload()
                reason = f"{pool.scope} {pool.provider} used {payload['percent']}% of its {pool.unit} limit"
                self.ledger.record_action(alert.bottle, soft.ACTION, ACTOR, reason, "ok", None, payload)
                self._raised.add(alert.key)
                metrics.soft_limit(alert.threshold)
                log.warning("soft limit %d%%: %s", alert.threshold, reason)
                if self.webhook is not None:
                    self.webhook.submit(alert)

    def restore_new_periods(self) -> None:
        """``auto_restore_on_new_period``: reopen bottles the controller cut for a budget that reset."""
        for s in self.ledger.desired_states():
            if s.state != "cutoff" or s.actor != ACTOR or not s.reason.startswith(BUDGET_REASON):
                continue
            pools = [p for p in self.ledger.pools() if p.scope in _path_scopes(s.bottle, self.ledger)]
            if any(p.exhausted for p in pools):
                continue
            bottle = self.ledger.get_bottle(s.bottle)
            if bottle is None:
                continue
            self.ledger.set_desired_state(s.bottle, "open", "new budget period", ACTOR)
            apply_state(self.nft, kernel_bottle(bottle), "open")
            self._applied[s.bottle] = "open"
            self.ledger.record_action(s.bottle, "restore", ACTOR, "new budget period", "ok")


def has_soft_limits(settings: Settings) -> bool:
    """Whether any pool can have a soft limit under ``settings`` (else the controller never looks)."""
    specs = [*settings.budget.values(), *settings.bottle_defaults.values()]
    return bool(settings.soft_limits or settings.usd.soft_limits
                or any(isinstance(s, PoolSpec) and s.soft_limits for s in specs))  # fmt: skip


def _path_scopes(bottle: str, ledger: Ledger) -> set[str]:
    parents = {b.name: b.parent for b in ledger.bottles()}
    scopes = {"global"}
    current: str | None = bottle
    while current is not None:
        scopes.add(f"bottle:{current}")
        current = parents.get(current)
    return scopes


def targets(pool: PoolView, bottle: str, parents: dict[str, str | None]) -> list[str]:
    """Bottles to enforce on when ``bottle`` found ``pool`` exhausted (pure).

    - an agent's pool: none — the meter's DENY stops that agent, the bottle's other agents go on;
    - a pool for every provider (``*``): every bottle under the pool's scope (all, for ``global``):
      none of them can make any call the pool would admit;
    - one provider's pool: the bottle that hit it. The others under it may use other providers;
      each is enforced on when its own next call to that provider finds the pool spent.
    """
    if pool.scope.startswith("agent:") or bottle not in parents:
        return []
    if pool.provider != "*":
        return [bottle]
    if pool.scope == "global":
        return sorted(parents)
    root = pool.scope.removeprefix("bottle:")
    found = []
    for name in sorted(parents):
        current: str | None = name
        while current is not None and current != root:
            current = parents.get(current)
        if current == root:
            found.append(name)
    return found
