"""A budget as an operator types it (CLI or dashboard): validated, written, and audited.

One path for both front ends, so ``bbnet budget set`` and the dashboard's ``b`` accept and refuse
exactly the same input and leave the same audit row.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable

from bbnet.ledger import Ledger
from bbnet.limits import parse_limit
from bbnet.model import MICROS_PER_USD, PERIODS, UNITS, Budget
from bbnet.names import Scope


def operator_actor() -> str:
    """``operator:<user>``: the login behind sudo, else the user running bbnet (by name if it has one)."""
    user = os.environ.get("SUDO_USER") or os.environ.get("USER")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"operator:{user}"


def parse_budget(scope: str, provider: str, limit: str, unit: str, period: str,
                 known_providers: Iterable[str]) -> Budget:  # fmt: skip
    """A validated :class:`Budget`, or ValueError with a one-line message naming the bad field."""
    parsed_scope = Scope.parse(scope.strip())
    provider = provider.strip()
    known = set(known_providers)
    if provider not in known:
        raise ValueError(f"unknown provider {provider!r}: expected one of {', '.join(sorted(known))}")
    if unit not in UNITS:
        raise ValueError(f"invalid unit {unit!r}: expected tokens or usd")
    if period not in PERIODS:
        raise ValueError(f"invalid period {period!r}: expected one of {', '.join(PERIODS)}")
    if not limit.strip():
        raise ValueError("no limit given: tokens (500000, 500k) or USD (20, 12.50)")
    return Budget(parsed_scope, provider, unit, parse_limit(limit, unit), period, "cli")


def save_budget(
    ledger: Ledger, budget: Budget, known_providers: Iterable[str], actor: str, reason: str = ""
) -> None:
    """Write the budget and record who set it."""
    ledger.set_budget(budget, known_providers)
    limit = budget.limit / MICROS_PER_USD if budget.unit == "usd" else budget.limit
    detail = {"scope": str(budget.scope), "provider": budget.provider, "unit": budget.unit, "limit": limit,
              "period": budget.period}  # fmt: skip
    ledger.record_action(budget.scope.bottle or None, "budget", actor, reason, "ok", detail=detail)
