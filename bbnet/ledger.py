"""The ledger: one SQLite file (WAL) or one PostgreSQL database, behind a small repository API.

No SQL lives outside the ledger modules (:mod:`bbnet.store`, :mod:`bbnet.budgets`,
:mod:`bbnet.pool_ops`, :mod:`bbnet.audit`, :mod:`bbnet.egress_ops`, this one). Every
read-modify-write of budget state is one ``BEGIN IMMEDIATE`` transaction (PostgreSQL: one
transaction under an advisory write lock), so pools stay exact under concurrent writers.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bbnet.audit import AuditOps
from bbnet.egress_ops import EgressOps
from bbnet.fleet_ops import FleetOps
from bbnet.model import POLICIES, Bottle
from bbnet.names import bottle_name
from bbnet.slices import SliceOps
from bbnet.stakes import StakeOps
from bbnet.store import DEFAULT_DB, LedgerError, LedgerUnreachable, bottle_from_row, default_path

__all__ = ["DEFAULT_DB", "Ledger", "LedgerError", "LedgerUnreachable", "default_path"]


class Ledger(StakeOps, SliceOps, FleetOps, AuditOps, EgressOps):
    """The repository API every plane uses."""

    # -- bottles -----------------------------------------------------------------------------

    def add_bottle(self, bottle: Bottle) -> Bottle:
        bottle_name(bottle.name)
        if bottle.policy not in POLICIES:
            raise LedgerError(f"invalid policy {bottle.policy!r}: expected one of {', '.join(POLICIES)}")
        now = time.time()
        with self._tx() as c:
            existing = c.execute("SELECT removed_at FROM bottles WHERE name = ?", (bottle.name,)).fetchone()
            if existing is not None and existing["removed_at"] is None:
                raise LedgerError(f"bottle {bottle.name!r} already exists")
            if bottle.parent is not None:
                parent = c.execute(
                    "SELECT removed_at FROM bottles WHERE name = ?", (bottle.parent,)
                ).fetchone()
                if parent is None or parent["removed_at"] is not None:
                    raise LedgerError(f"parent bottle {bottle.parent!r} does not exist")
            c.execute(
                "INSERT INTO bottles (name, parent, netns, veth, addresses, cgroup, policy, managed, labels,"
                " created_at, removed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (name) DO UPDATE"
                " SET parent = excluded.parent, netns = excluded.netns, veth = excluded.veth,"
                " addresses = excluded.addresses, cgroup = excluded.cgroup, policy = excluded.policy,"
                " managed = excluded.managed, labels = excluded.labels, created_at = excluded.created_at,"
                " removed_at = NULL",
                (
                    bottle.name,
                    bottle.parent,
                    bottle.netns,
                    bottle.veth,
                    json.dumps(list(bottle.addresses)),
                    bottle.cgroup,
                    bottle.policy,
                    int(bottle.managed),
                    json.dumps(bottle.labels),
                    now,
                ),
            )
        found = self.get_bottle(bottle.name)
        assert found is not None
        return found

    _BOTTLE_FIELDS = frozenset({"netns", "veth", "addresses", "cgroup", "policy", "managed", "labels"})

    def update_bottle(self, name: str, **fields: Any) -> Bottle:
        unknown = set(fields) - self._BOTTLE_FIELDS
        if unknown:
            raise LedgerError(f"cannot update bottle field(s) {', '.join(sorted(unknown))}")
        if "policy" in fields and fields["policy"] not in POLICIES:
            raise LedgerError(f"invalid policy {fields['policy']!r}: expected one of {', '.join(POLICIES)}")
        encoded = {
            k: json.dumps(list(v))
            if k == "addresses"
            else json.dumps(v)
            if k == "labels"
            else int(v)
            if k == "managed"
            else v
            for k, v in fields.items()
        }
        with self._tx() as c:
            self._require_bottle(c, name)
            for k, v in encoded.items():
                c.execute(f"UPDATE bottles SET {k} = ? WHERE name = ?", (v, name))  # k from a fixed set
        found = self.get_bottle(name)
        assert found is not None
        return found

    def get_bottle(self, name: str) -> Bottle | None:
        rows = self._read("SELECT * FROM bottles WHERE name = ? AND removed_at IS NULL", (name,))
        return bottle_from_row(rows[0]) if rows else None

    def bottles(self, include_removed: bool = False) -> list[Bottle]:
        where = "" if include_removed else " WHERE removed_at IS NULL"
        return [bottle_from_row(r) for r in self._read(f"SELECT * FROM bottles{where} ORDER BY name")]

    def remove_bottle(self, name: str) -> None:
        with self._tx() as c:
            self._require_bottle(c, name)
            children = c.execute(
                "SELECT name FROM bottles WHERE parent = ? AND removed_at IS NULL", (name,)
            ).fetchall()
            if children:
                raise LedgerError(
                    f"bottle {name!r} still has child bottles: {', '.join(r[0] for r in children)}"
                )
            c.execute("UPDATE bottles SET removed_at = ? WHERE name = ?", (time.time(), name))
            c.execute(
                "DELETE FROM egress WHERE bottle = ?", (name,)
            )  # a new bottle of that name starts afresh
