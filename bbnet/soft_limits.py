"""Soft limits (pure): percents of a pool's limit that raise an alert once per period.

A pool whose ``used`` reaches ``threshold`` percent of its limit raises one :class:`Alert` per
(pool, period start, threshold); the controller audits it as an ``actions`` row (action
``soft_limit``, the alert in ``detail``) before it POSTs the webhook, and reads those rows back on
start, so an alert is raised at most once even across restarts. Thresholds come from the settings
entry the pool was made from (``budget.<provider>.soft_limits``, ``bottle_defaults.<provider>.
soft_limits``, ``usd.soft_limits``), else the file's ``soft_limits``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bbnet.model import MICROS_PER_USD, PoolView
from bbnet.settings import PoolSpec, Settings

ACTION = "soft_limit"  # the actions row that says an alert was raised
DELIVERY = "soft_limit_webhook"  # the actions row that says how its webhook went

#: What makes an alert unique: scope, provider, unit, period start, threshold.
AlertKey = tuple[str, str, str, float, int]


@dataclass(frozen=True)
class Alert:
    pool: PoolView
    threshold: int  # percent

    @property
    def key(self) -> AlertKey:
        p = self.pool
        return (p.scope, p.provider, p.unit, p.period_start, self.threshold)

    @property
    def bottle(self) -> str | None:
        """The bottle the pool belongs to (an agent's pool: its bottle); None for ``global``."""
        scope = self.pool.scope
        if scope.startswith("bottle:"):
            return scope.removeprefix("bottle:")
        if scope.startswith("agent:"):
            return scope.removeprefix("agent:").split("/", 1)[0]
        return None

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body and the audit row's detail: amounts in the pool's unit (tokens,
        or USD for a USD pool); no secret is ever in it."""
        p = self.pool
        scale = MICROS_PER_USD if p.unit == "usd" else 1
        return {
            "event": ACTION,
            "scope": p.scope,
            "bottle": self.bottle,
            "provider": p.provider,
            "unit": p.unit,
            "period": p.period,
            "period_start": p.period_start,
            "limit": p.limit / scale if scale != 1 else p.limit,
            "used": p.used / scale if scale != 1 else p.used,
            "percent": round(p.used * 100 / p.limit, 2),
            "threshold": self.threshold,
        }


def _spec_thresholds(spec: int | PoolSpec | None) -> list[int] | None:
    return spec.soft_limits if isinstance(spec, PoolSpec) else None


def thresholds_for(settings: Settings, pool: PoolView) -> list[int]:
    """The soft limits (percents, ascending) of ``pool``: its settings entry's, else the default."""
    own: list[int] | None = None
    if pool.unit == "usd":
        own = settings.usd.soft_limits
    elif pool.scope == "global":
        own = _spec_thresholds(settings.budget.get(pool.provider))
    elif pool.scope.startswith("bottle:"):
        own = _spec_thresholds(settings.bottle_defaults.get(pool.provider))
    return settings.soft_limits if own is None else own


def crossed(pool: PoolView, thresholds: Iterable[int], raised: set[AlertKey]) -> list[Alert]:
    """Alerts ``pool`` is due: each threshold its ``used`` has reached that was not yet raised in
    this period (a jump past several raises each). A pool with no limit (0) raises none."""
    if pool.limit <= 0:
        return []
    due = [Alert(pool, t) for t in thresholds if pool.used * 100 >= t * pool.limit]
    return [a for a in due if a.key not in raised]


def key_of(detail: Mapping[str, Any]) -> AlertKey | None:
    """The key of an alert from its audit row's detail; None if the row does not hold one."""
    try:
        return (
            str(detail["scope"]),
            str(detail["provider"]),
            str(detail["unit"]),
            float(detail["period_start"]),
            int(detail["threshold"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
