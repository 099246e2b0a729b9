"""Egress state in the ledger: each bottle's policy (with its audit row) and the refusals counter."""

from __future__ import annotations

import json
import time
from typing import Any

from bbnet.pools import period_start
from bbnet.store import Store

DEFAULT_ACTION = "egress-default"


class EgressOps(Store):
    def set_egress(self, bottle: str, policy: str | None, actor: str, reason: str = "") -> None:
        """Give ``bottle`` its own policy (JSON), or ``None``: back to the host default. One
        transaction with its ``actions`` row."""
        now = time.time()
        with self._tx() as c:
            self._require_bottle(c, bottle)
            if policy is None:
                c.execute("DELETE FROM egress WHERE bottle = ?", (bottle,))
            else:
                c.execute(
                    "INSERT INTO egress (bottle, policy, updated_at) VALUES (?, ?, ?) ON CONFLICT (bottle)"
                    " DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                    (bottle, policy, now),
                )
            c.execute(
                "INSERT INTO actions (ts, bottle, action, actor, reason, result, detail)"
                " VALUES (?, ?, 'egress', ?, ?, 'ok', ?)",
                (now, bottle, actor, reason, policy if policy is not None else '"default"'),
            )

    def egress_policies(self) -> dict[str, str]:
        """The live bottles that have their own policy → its JSON."""
        rows = self._read(
            "SELECT e.bottle, e.policy FROM egress e JOIN bottles b ON b.name = e.bottle WHERE b.removed_at IS NULL"
        )
        return {r["bottle"]: r["policy"] for r in rows}

    def note_egress_default(self, policy: str, actor: str) -> bool:
        """Record the host default in force (an ``actions`` row) when it differs from the last one."""
        with self._tx() as c:
            last = c.execute(
                "SELECT detail FROM actions WHERE action = ? ORDER BY id DESC LIMIT 1", (DEFAULT_ACTION,)
            ).fetchone()
            if last is not None and last["detail"] == policy:
                return False
            c.execute(
                "INSERT INTO actions (ts, bottle, action, actor, reason, result, detail)"
                " VALUES (?, NULL, ?, ?, 'settings egress', 'ok', ?)",
                (time.time(), DEFAULT_ACTION, actor, policy),
            )
        return True

    def record_refusal(
        self, bottle: str, host: str, code: str, request: str, now: float | None = None
    ) -> None:
        ts = time.time() if now is None else now
        with self._tx() as c:
            c.execute(
                "INSERT INTO refusals (day, bottle, host, code, count, last_ts, last_request)"
                " VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (day, bottle, host, code) DO UPDATE SET"
                " count = count + 1, last_ts = excluded.last_ts, last_request = excluded.last_request",
                (period_start("day", ts), bottle, host, code, ts, request),
            )

    def refusals(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._read("SELECT * FROM refusals ORDER BY day, bottle, host, code")]


def policy_json(doc: Any) -> str:
    """A policy document as stored: canonical JSON, so equal policies compare equal."""
    return json.dumps(doc.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
