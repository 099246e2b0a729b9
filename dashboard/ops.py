"""What an operator does from the dashboard, through the same code as the CLI.

Enforcement goes through :func:`enforcer.actions.act` (desired state, the kernel at once, an
``actions`` row) with ``operator:<user>`` as actor. A budget is validated like ``bbnet budget set``
(:mod:`bbnet.budget_input`: the same parsing, writing and ``budget`` audit row).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bbnet.budget_input import operator_actor, parse_budget
from bbnet.budget_input import save_budget as save
from bbnet.ledger import Ledger, LedgerError
from bbnet.model import Budget
from enforcer.actions import TARGET_STATE, act
from enforcer.errors import EnforcerError
from netrules.types import RulesError

ACTIONS = tuple(TARGET_STATE)  # cutoff, restore, freeze, thaw, kill
REASON = "from the dashboard"
# what an action can fail with: each carries a one-line message for the operator
ACTION_ERRORS = (EnforcerError, RulesError, LedgerError, ValueError)


def run_action(ledger: Ledger, action: str, bottle: str, actor: str) -> str:
    """Run ``action`` on ``bottle`` exactly as ``bbnet <action>`` does; return the state reached."""
    return act(ledger, action, bottle, reason=REASON, actor=actor)


@dataclass(frozen=True)
class BudgetForm:
    """The budget form's fields as typed."""

    scope: str
    provider: str
    limit: str
    unit: str = "tokens"
    period: str = "total"


def budget_from_form(form: BudgetForm, known_providers: Iterable[str]) -> Budget:
    """A validated :class:`Budget`, or ValueError with a one-line message naming the bad field."""
    return parse_budget(form.scope, form.provider, form.limit, form.unit, form.period, known_providers)


def save_budget(ledger: Ledger, budget: Budget, known_providers: Iterable[str], actor: str) -> None:
    """Write the budget and record who set it, as ``bbnet budget set`` does."""
    save(ledger, budget, known_providers, actor, REASON)


__all__ = [
    "ACTIONS",
    "ACTION_ERRORS",
    "BudgetForm",
    "budget_from_form",
    "operator_actor",
    "run_action",
    "save_budget",
]
