"""Operator actions: cutoff, restore, freeze, thaw, kill.

Each writes the bottle's desired state, applies it to the kernel at once through
:func:`enforcer.kernel.apply_state`, and records an ``actions`` row with who asked, why, the result
and how long it took. Running an action twice is harmless.
"""

from __future__ import annotations

import time

from bbnet.ledger import Ledger
from enforcer import bottles
from enforcer.errors import EnforcerError
from enforcer.kernel import apply_all, apply_state
from enforcer.nft import Nft, NftError
from enforcer.spec import kernel_bottle

# thaw resumes the processes but keeps the network cut; restore opens both
TARGET_STATE = {"cutoff": "cutoff", "restore": "open", "freeze": "frozen", "thaw": "cutoff", "kill": "killed"}


def _apply(nft: Nft, ledger: Ledger, name: str, state: str) -> int:
    """Apply one bottle's state; if bbnet's table is missing, install the whole table first.

    Returns how many of the bottle's connections the cut closed."""
    target = kernel_bottle(bottles.get(ledger, name))
    try:
        return apply_state(nft, target, state)
    except NftError:
        if nft.installed():
            raise
        states = {s.bottle: s.state for s in ledger.desired_states()}
        apply_all(nft, [kernel_bottle(b) for b in ledger.bottles()], states)
        return apply_state(nft, target, state)


def act(ledger: Ledger, action: str, name: str, *, reason: str = "", actor: str = "cli") -> str:
    """Run ``action`` on bottle ``name``; return the state reached. Errors are recorded, then raised."""
    if action not in TARGET_STATE:
        raise EnforcerError(f"invalid action {action!r}: expected one of {', '.join(TARGET_STATE)}")
    started = time.perf_counter()
    bottle = bottles.get(ledger, name)
    state = TARGET_STATE[action]
    current = ledger.desired_state(bottle.name).state
    if current == "killed" and state != "killed":
        raise EnforcerError(f"bottle {name!r} was killed; remove it with 'bbnet bottle rm {name}'")
    bottles.require_root()
    nft = Nft()
    ledger.set_desired_state(bottle.name, state, reason, actor)
    try:
        closed = _apply(nft, ledger, bottle.name, state)
    except EnforcerError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        ledger.record_action(bottle.name, action, actor, reason, f"error: {exc}", elapsed)
        raise
    elapsed = (time.perf_counter() - started) * 1000
    detail = {"state": state} | ({"connections_closed": closed} if closed else {})
    ledger.record_action(bottle.name, action, actor, reason, "ok", elapsed, detail)
    return state
