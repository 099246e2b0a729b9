"""Meter stakes: room a meter holds in the pools it charges, so it can admit calls in memory.

Reserving in the ledger costs a write transaction per call before the call can go out. A meter
with a stake instead holds, in each pool on its paths, an amount counted in the pool's
``reserved`` like any hold (``stake_holds``), and admits a call when its own count of the stake's
unheld part (*free*) covers the call in every pool (:mod:`meter.stake`); the call is written to
the meter's journal (:mod:`bbnet.stake_journal`) before it is forwarded, and its hold moves from
the stake to ``used`` when its usage row is written (:meth:`StakeOps._stake_commit`).

When free does not cover a call, the meter asks the ledger (:class:`StakeReserve`): the call is
decided exactly as :meth:`reserve` would decide it, with the stake's free counted as room (it is
this meter's), its hold taken from the stake, and the stake's free set for the next calls:
``HEADROOM_CALLS`` times this call's hold where the pool keeps at least ``SHARE`` times that much
room beyond it, else nothing. Near a limit a stake holds no free room at all, so every call there
is decided by the ledger, as without stakes, and other meters on the ledger see all the room.
A meter whose free room runs low (under ``HEADROOM_CALLS // 2`` holds in a pool) also asks for it
to be set the same way off the hot path (:class:`StakeTopUp`, written with its commits after an
answer), so on a steady conversation nearly every call is admitted in memory.

A fleet pool on the path (its limit is a slice the fleet lease manager sizes from its counters)
takes no stake: such a call gets a reservation row of its own, as with :meth:`reserve`.

A dead meter's stake is settled from its journal (:meth:`settle_stake`): every call it admitted
and did not commit or release is billed as a lost call (its input estimate and the output last
seen), once, and the rest of the stake is freed. The meter's journal lock tells a dead meter at
once (``stake_journal.owner_gone``); an expired lease does too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bbnet import pools as arith
from bbnet import stake_journal
from bbnet.budgets import BudgetOps, check_usage, lost_usage
from bbnet.model import (
    Admission,
    Commit,
    CommitResult,
    Outcome,
    ReserveResult,
    StakeFree,
    StakeReserve,
    StakeTopUp,
    Write,
    Written,
)
from bbnet.store import Conn, LedgerError

HEADROOM_CALLS = 8  # free room a stake keeps: this many holds of the call that grew it
SHARE = 4  # ... only where the pool has this many times that beyond the call


def stake_targets(holds: Mapping[int, int], remaining: Mapping[int, int]) -> dict[int, int]:
    """The free room a stake keeps in each pool after admitting a call holding ``holds``, where
    ``remaining`` is each pool's room after that call (the stake's free counted as room)."""
    out: dict[int, int] = {}
    for pool_id, room in remaining.items():
        want = holds.get(pool_id, 0) * HEADROOM_CALLS
        out[pool_id] = want if want and room >= SHARE * want else 0
    return out


class StakeGone(LedgerError):
    """The meter's stake was settled as a dead meter's (its lease expired): it needs a new one."""

    def __init__(self, key: str) -> None:
        super().__init__(f"stake {key} is gone: settled as a dead meter's")


class StakeOps(BudgetOps):
    #: False where every call must go through :meth:`reserve` (a fleet host's ledger tops its
    #: slices up there): a meter then holds no stake.
    takes_stakes = True

    # -- the meter's side --------------------------------------------------------------------

    def open_stake(self, key: str, journal: Path, lease_seconds: float) -> None:
        now = time.time()
        with self._tx(hot=True) as c:
            c.execute(
                "INSERT INTO stakes (key, node, journal, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (key, self.node, str(journal), now, now + lease_seconds),
            )

    def renew_stake(self, key: str, lease_seconds: float) -> bool:
        """Extend the stake's lease; False when it is gone (settled as a dead meter's)."""
        with self._tx(hot=True) as c:
            return (
                c.execute(
                    "UPDATE stakes SET expires_at = ? WHERE key = ?", (time.time() + lease_seconds, key)
                ).rowcount
                == 1
            )

    def return_free(self, key: str, free: Mapping[int, int]) -> None:
        """Give the stake's free room (pool id -> amount, as the meter counts it) back to the pools."""
        back = {pool_id: -amount for pool_id, amount in free.items() if amount > 0}
        if not back:
            return
        with self._tx(hot=True) as c:
            if self._stake_alive(c, key):
                self._resize(c, key, back)

    def reservations(self) -> list[dict[str, Any]]:
        """Every call holding budget: the reservation rows, then each call a stake's journal leaves
        open with no usage row yet (``stake``: its stake; None for a row), oldest first."""
        rows = [{**r, "stake": None} for r in super().reservations()]
        for stake in self._read("SELECT key, journal, expires_at FROM stakes"):
            try:
                open_calls = stake_journal.read(Path(stake["journal"]))
            except OSError:  # settled meanwhile
                continue
            committed = self._committed_keys(list(open_calls))
            rows.extend(
                {
                    **call,
                    "pools": json.dumps(call["pools"]),
                    "expires_at": stake["expires_at"],
                    "stake": stake["key"],
                }
                for key, call in open_calls.items()
                if key not in committed
            )
        return sorted(rows, key=lambda r: float(r["created_at"]))

    def _committed_keys(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                str(r[0]) for r in self._read(f"SELECT key FROM usage WHERE key IN ({marks})", chunk)
            )
        return found

    def stakes(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT * FROM stakes ORDER BY created_at")]

    def stake_holds(self, key: str) -> dict[int, int]:
        rows = self._read("SELECT pool_id, amount FROM stake_holds WHERE stake = ?", (key,))
        return {int(r[0]): int(r[1]) for r in rows}

    # -- writes (Ledger.write_batch) ---------------------------------------------------------

    def _apply(self, c: Conn, write: Write, now: float) -> Written:
        if isinstance(write, StakeReserve):
            return self._stake_reserve(c, write, now)
        if isinstance(write, StakeTopUp):
            return self._stake_top_up(c, write, now)
        if isinstance(write, Commit) and write.stake is not None:
            check_usage(write.usage)
            return self._stake_commit(c, write)
        return super()._apply(c, write, now)

    def _stake_reserve(self, c: Conn, w: StakeReserve, now: float) -> Admission:
        req = w.req
        found = c.execute(
            "SELECT EXISTS (SELECT 1 FROM usage WHERE key = ?) AS committed,"
            " EXISTS (SELECT 1 FROM stakes WHERE key = ?) AS staked",
            (req.key, w.stake),
        ).fetchone()
        if found["committed"]:
            raise LedgerError(f"call {req.key!r} is already committed")
        if not found["staked"]:
            raise StakeGone(w.stake)
        path = self._on_path(c, req.bottle, req.agent, req.provider, now)
        units = tuple((pool_id, pool.unit) for pool_id, pool in path)
        plan = self.plans.get((req.bottle, req.agent, req.provider), now)
        version = self.plans.version
        until, stamp = (
            (plan.end, (version, self.plans.generation)) if plan and version is not None else (now, None)
        )
        if self._fleet_on(c, [pool_id for pool_id, _ in path]):
            return Admission(self._reserve(c, req, now), None, (), units, now, None)
        free = dict(w.free)
        views = [
            (pool_id, replace(pool, reserved=pool.reserved - free.get(pool_id, 0))) for pool_id, pool in path
        ]
        decision = arith.decide(req, [pool for _, pool in views])
        if decision.outcome is Outcome.DENY:
            denied = ReserveResult(Outcome.DENY, req.key, governing=decision.governing,
                                   exhausted=decision.exhausted, needed=decision.needed)  # fmt: skip
            return Admission(denied, None, tuple((i, free.get(i, 0)) for i, _ in path), units, until, stamp)
        holds = {
            pool_id: amount
            for pool_id, pool in views
            if (amount := decision.tokens if pool.unit == "tokens" else decision.usd_micros)
        }
        targets = stake_targets(holds, {i: pool.remaining - holds.get(i, 0) for i, pool in views})
        grow = {
            i: change
            for i, target in targets.items()
            if (change := holds.get(i, 0) + target - free.get(i, 0))
        }
        self._resize(c, w.stake, grow)
        result = ReserveResult(decision.outcome, req.key, decision.tokens, decision.usd_micros,
                               decision.output_tokens, decision.governing)  # fmt: skip
        return Admission(result, tuple(holds.items()), tuple(targets.items()), units, until, stamp)

    def _stake_top_up(self, c: Conn, w: StakeTopUp, now: float) -> StakeFree:
        """The stake's free room in the path's pools set as :meth:`_stake_reserve` would set it
        after a call holding ``w.holds``, with no call: grown where the pools have room, shrunk
        (given back) where they no longer do."""
        if not self._stake_alive(c, w.stake):
            raise StakeGone(w.stake)
        path = self._on_path(c, w.bottle, w.agent, w.provider, now)
        if self._fleet_on(c, [pool_id for pool_id, _ in path]):
            return StakeFree(())  # such a path takes no stake (its calls have reservation rows)
        free = dict(w.free)
        targets = stake_targets(dict(w.holds), {i: pool.remaining + free.get(i, 0) for i, pool in path})
        change = {i: delta for i, target in targets.items() if (delta := target - free.get(i, 0))}
        self._resize(c, w.stake, change)
        return StakeFree(tuple(targets.items()))

    def _stake_commit(self, c: Conn, w: Commit) -> CommitResult:
        """A stake call's usage row; its hold moves from the stake to used (a stake already settled
        has given its holds back: the row is still written, nothing is taken from it)."""
        assert w.stake is not None
        holds = dict(w.holds) if self._stake_alive(c, w.stake) else {}
        result = self._record(c, w.key, w.usage, holds)
        if result.recorded and holds:
            self._stake_move(c, w.stake, {pool_id: -amount for pool_id, amount in holds.items()})
        return result

    # -- settling a dead meter's stake -------------------------------------------------------

    def sweep_expired(self, now: float | None = None) -> list[tuple[str, CommitResult]]:
        """Expired reservations billed as lost calls, then every dead meter's stake settled."""
        return [*super().sweep_expired(now), *self.settle_dead_stakes(now)]

    def settle_dead_stakes(self, now: float | None = None) -> list[tuple[str, CommitResult]]:
        """Settle each stake whose lease has expired, or whose meter on this node is gone."""
        at = time.time() if now is None else now
        dead = [
            r["key"]
            for r in self._read("SELECT key, node, journal, expires_at FROM stakes")
            if r["expires_at"] <= at
            or (r["node"] == self.node and stake_journal.owner_gone(Path(r["journal"])))
        ]
        return [lost for key in dead for lost in self.settle_stake(key)]

    def settle_stake(self, key: str) -> list[tuple[str, CommitResult]]:
        """Bill each call the stake's journal leaves open and not committed as a lost call, free the
        rest of the stake, and drop it and its journal; (bottle, result) per call billed. Once: a
        second settle finds no stake. A journal that cannot be read bills nothing (said in the
        error) and the stake stays, so no call is dropped silently."""
        with self._tx() as c:
            row = c.execute("SELECT journal FROM stakes WHERE key = ?", (key,)).fetchone()
            if row is None:
                return []
            journal = Path(row["journal"])
            try:
                open_calls = stake_journal.read(journal) if journal.exists() else {}
            except OSError as e:
                raise LedgerError(
                    f"stake {key}: journal {journal} unreadable ({e}); the stake is kept"
                ) from None
            billed: list[tuple[str, CommitResult]] = []
            for call in open_calls.values():
                holds = {int(pool_id): int(amount) for pool_id, amount in call["pools"]}
                result = self._record(c, call["key"], lost_usage(call), holds)
                if result.recorded:
                    self._stake_move(c, key, {pool_id: -amount for pool_id, amount in holds.items()})
                    billed.append((str(call["bottle"]), result))
            rest = {int(r[0]): -int(r[1]) for r in c.execute(
                "SELECT pool_id, amount FROM stake_holds WHERE stake = ?", (key,)).fetchall() if r[1]}  # fmt: skip
            self._move(c, {}, rest)
            c.execute("DELETE FROM stake_holds WHERE stake = ?", (key,))
            c.execute("DELETE FROM stakes WHERE key = ?", (key,))
        journal.unlink(missing_ok=True)
        return billed

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _stake_alive(c: Conn, key: str) -> bool:
        return bool(c.execute("SELECT EXISTS (SELECT 1 FROM stakes WHERE key = ?)", (key,)).fetchone()[0])

    @staticmethod
    def _fleet_on(c: Conn, ids: list[int]) -> bool:
        if not ids:
            return False
        return bool(c.execute(
            f"SELECT EXISTS (SELECT 1 FROM pools WHERE slice_limit IS NOT NULL AND id IN ({','.join('?' * len(ids))}))",
            ids).fetchone()[0])  # fmt: skip

    def _resize(self, c: Conn, key: str, change: Mapping[int, int]) -> None:
        """Grow the stake by ``change`` (pool id -> amount, negative to shrink): in its holds and in
        the pools' ``reserved`` alike."""
        self._move(c, {}, change)
        self._stake_move(c, key, change)

    @staticmethod
    def _stake_move(c: Conn, key: str, amounts: Mapping[int, int]) -> None:
        """Add ``amounts`` (pool id -> amount, negative to take) to the stake's holds: one statement
        when only taking (the holds exist: what is taken was held), else one per pool."""
        moved = {pool_id: amount for pool_id, amount in amounts.items() if amount}
        if not moved:
            return
        if all(amount < 0 for amount in moved.values()):
            c.execute(
                f"UPDATE stake_holds SET amount = amount + CASE pool_id{' WHEN ? THEN ?' * len(moved)} ELSE 0 END"
                f" WHERE stake = ? AND pool_id IN ({','.join('?' * len(moved))})",
                (*(x for pair in moved.items() for x in pair), key, *moved),
            )
            return
        for pool_id, amount in moved.items():
            c.execute(
                "INSERT INTO stake_holds (stake, pool_id, amount) VALUES (?, ?, ?) ON CONFLICT (stake, pool_id)"
                " DO UPDATE SET amount = stake_holds.amount + excluded.amount",
                (key, pool_id, amount),
            )
