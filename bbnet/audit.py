"""Enforcement state and history: desired state per bottle, the actions log, usage listings."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from bbnet.model import STATES, Action, DesiredState
from bbnet.store import LedgerError, Store


@dataclass(frozen=True)
class UsageTotals:
    """A (bottle, provider)'s usage rows summed: what folding each of them would give."""

    bottle: str
    provider: str
    calls: int
    tokens: int  # input + output
    micros: int  # priced calls only
    unpriced: int  # calls of a model without a price (no cost)
    last_ts: float


# Each read below is answered from an index (schema v3), never a scan of the usage table:
# totals from the covering index usage_totals, in (bottle, provider) order so no sort is needed;
# the last day through usage_ts (``+id`` keeps the planner off the rowid range, which is all rows);
# a bottle's latest calls through usage_bottle_id, newest first, stopping after ``limit``.
USAGE_TOTALS_SQL = (
    "SELECT bottle, provider, count(*) AS calls, sum(input_tokens + output_tokens) AS tokens,"
    " coalesce(sum(cost_micros), 0) AS micros, count(*) - count(cost_micros) AS unpriced,"
    " max(ts) AS last_ts FROM usage WHERE id <= ? GROUP BY bottle, provider ORDER BY bottle, provider"
)
USAGE_SINCE_SQL = "SELECT * FROM usage WHERE ts > ? AND +id <= ? ORDER BY +id"
_SMALLEST_CALL = (
    "SELECT min(amount) FROM (SELECT {amount} AS amount FROM usage WHERE bottle = ?1"
    " AND (?2 = '*' OR provider = ?2) AND estimated = 0 AND {amount} > 0 ORDER BY id DESC LIMIT ?3) AS recent"
)
SMALLEST_CALL_SQL = {
    "tokens": _SMALLEST_CALL.format(amount="input_tokens + output_tokens"),
    "usd": _SMALLEST_CALL.format(amount="cost_micros"),
}
LATEST_USAGE_SQL = "SELECT * FROM usage WHERE bottle = ? AND id <= ? ORDER BY id DESC LIMIT ?"


def _action_from_row(r: Any) -> Action:
    return Action(
        r["id"],
        r["ts"],
        r["bottle"],
        r["action"],
        r["actor"],
        r["reason"],
        r["result"],
        r["duration_ms"],
        r["detail"],
    )


class AuditOps(Store):
    def desired_state(self, bottle: str) -> DesiredState:
        rows = self._read("SELECT * FROM desired_state WHERE bottle = ?", (bottle,))
        if not rows:
            return DesiredState(bottle, "open")
        r = rows[0]
        return DesiredState(r["bottle"], r["state"], r["reason"], r["actor"], r["updated_at"])

    def desired_states(self) -> list[DesiredState]:
        """Desired state of every live bottle (``open`` where none was ever set)."""
        rows = self._read(
            "SELECT b.name, coalesce(d.state, 'open') AS state, coalesce(d.reason, '') AS reason,"
            " coalesce(d.actor, '') AS actor, coalesce(d.updated_at, 0) AS updated_at"
            " FROM bottles b LEFT JOIN desired_state d ON d.bottle = b.name WHERE b.removed_at IS NULL"
            " ORDER BY b.name"
        )
        return [DesiredState(r["name"], r["state"], r["reason"], r["actor"], r["updated_at"]) for r in rows]

    def set_desired_state(self, bottle: str, state: str, reason: str = "", actor: str = "") -> DesiredState:
        if state not in STATES:
            raise LedgerError(f"invalid state {state!r}: expected one of {', '.join(STATES)}")
        now = time.time()
        with self._tx() as c:
            if c.execute("SELECT 1 FROM bottles WHERE name = ?", (bottle,)).fetchone() is None:
                raise LedgerError(f"unknown bottle {bottle!r}")
            c.execute(
                "INSERT INTO desired_state (bottle, state, reason, actor, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (bottle) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
                " actor = excluded.actor, updated_at = excluded.updated_at",
                (bottle, state, reason, actor, now),
            )
        return DesiredState(bottle, state, reason, actor, now)

    def record_action(
        self,
        bottle: str | None,
        action: str,
        actor: str,
        reason: str,
        result: str,
        duration_ms: float | None = None,
        detail: dict[str, Any] | str | None = None,
    ) -> int:
        text = detail if isinstance(detail, str) or detail is None else json.dumps(detail, sort_keys=True)
        with self._tx() as c:
            return int(
                c.execute(
                    "INSERT INTO actions (ts, bottle, action, actor, reason, result, duration_ms, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (time.time(), bottle, action, actor, reason, result, duration_ms, text),
                ).fetchone()[0]
            )

    def actions(self, since_id: int = 0, limit: int = 1000, bottle: str | None = None) -> list[Action]:
        where, args = "id > ?", [since_id]
        if bottle is not None:
            where += " AND bottle = ?"
            args.append(bottle)  # type: ignore[arg-type]
        rows = self._read(f"SELECT * FROM actions WHERE {where} ORDER BY id LIMIT ?", (*args, limit))
        return [_action_from_row(r) for r in rows]

    def actions_named(self, action: str) -> list[Action]:
        """Every ``actions`` row of one kind, oldest first (soft-limit alerts: few, read once at start)."""
        rows = self._read("SELECT * FROM actions WHERE action = ? ORDER BY id", (action,))
        return [_action_from_row(r) for r in rows]

    def usage(self, since_id: int = 0, limit: int = 1000, bottle: str | None = None) -> list[dict[str, Any]]:
        """Usage rows after ``since_id`` (oldest first): for tailing and for tests."""
        where, args = "id > ?", [since_id]
        if bottle is not None:
            where += " AND bottle = ?"
            args.append(bottle)  # type: ignore[arg-type]
        return [
            dict(r)
            for r in self._read(f"SELECT * FROM usage WHERE {where} ORDER BY id LIMIT ?", (*args, limit))
        ]

    def last_usage_id(self) -> int:
        """The newest usage row's id (0 when there is none): the bound for a consistent set of reads."""
        return int(self._read("SELECT coalesce(max(id), 0) FROM usage")[0][0])

    def usage_summary(self, upto_id: int) -> list[UsageTotals]:
        """Usage rows with ``id <= upto_id`` summed per (bottle, provider), in that order."""
        return [
            UsageTotals(
                r["bottle"], r["provider"], r["calls"], r["tokens"], r["micros"], r["unpriced"], r["last_ts"]
            )
            for r in self._read(USAGE_TOTALS_SQL, (upto_id,))
        ]

    def usage_since(self, since_ts: float, upto_id: int) -> list[dict[str, Any]]:
        """Usage rows with ``ts > since_ts`` and ``id <= upto_id``, in id (commit) order."""
        return [dict(r) for r in self._read(USAGE_SINCE_SQL, (since_ts, upto_id))]

    def latest_usage(self, bottle: str, upto_id: int, limit: int) -> list[dict[str, Any]]:
        """A bottle's last ``limit`` usage rows with ``id <= upto_id``, oldest first."""
        if limit < 1:
            raise LedgerError(f"invalid limit {limit}: expected at least 1")
        rows = self._read(LATEST_USAGE_SQL, (bottle, upto_id, limit))
        return [dict(r) for r in reversed(rows)]

    def smallest_recent_call(self, bottle: str, provider: str, unit: str, last: int) -> int | None:
        """The smallest real spend among ``bottle``'s last ``last`` calls (to ``provider``, unless
        ``*``), in ``unit``: tokens (input + output) or micro-USD. Estimated rows and calls that
        spent nothing are no measure of what a call needs and are passed over; None when there is
        no other row."""
        if last < 1:
            raise LedgerError(f"invalid count {last}: expected at least 1")
        if unit not in ("tokens", "usd"):
            raise LedgerError(f"invalid unit {unit!r}: expected tokens or usd")
        rows = self._read(SMALLEST_CALL_SQL[unit], (bottle, provider, last))
        return None if rows[0][0] is None else int(rows[0][0])

    def info(self) -> dict[str, Any]:
        """Where (a path, or the URL without its password), schema version, sizes and row counts."""
        counts = {
            t: self._read(f"SELECT count(*) FROM {t}")[0][0]
            for t in (
                "bottles",
                "budgets",
                "pools",
                "reservations",
                "usage",
                "desired_state",
                "actions",
                "egress",
                "refusals",
            )
        }
        if self.url is not None:  # PostgreSQL: the database's size; no file, no mode
            size = self._read("SELECT pg_database_size(current_database())")[0][0]
            return {"path": self.where, "schema_version": self.schema_version(), "mode": None,
                    "bytes": {"db": int(size)}, "rows": counts}  # fmt: skip
        sizes = {
            suffix or "db": os.path.getsize(f"{self.path}{suffix}")
            if os.path.exists(f"{self.path}{suffix}")
            else 0
            for suffix in ("", "-wal", "-shm")
        }
        mode = oct(os.stat(self.path).st_mode & 0o777)
        return {
            "path": str(self.path),
            "schema_version": self.schema_version(),
            "mode": mode,
            "bytes": sizes,
            "rows": counts,
        }
