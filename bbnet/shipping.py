"""Pure: a host's usage rows shipped to the fleet database, for fleet-wide reports.

In fleet mode each host meters into its own ledger (the journal); the lease manager copies its usage
rows, oldest first, into the fleet database's ``usage`` table, a batch per transaction, so
``bbnet report … --db FLEET_URL`` sees the whole fleet. The fleet keeps one watermark per node
(``fleet_nodes.shipped_upto``: the last local ``usage.id`` shipped), moved in the batch's own
transaction, so a crash between never loses or doubles a row; the insert is also idempotent by
``usage.key`` (flow ids: mitmproxy's random UUIDs, unique across hosts), so shipping again is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BATCH_ROWS = 500  # rows per transaction: 500 x 22 values stays far inside either engine's limits

# every usage column but ``id`` (the fleet numbers its own rows), in schema order
COLUMNS = (
    "key", "ts", "bottle", "agent", "provider", "family", "model", "host", "path", "input_tokens",
    "output_tokens", "cache_write_tokens", "cache_read_tokens", "reasoning_tokens", "cost_usd", "estimated",
    "stream", "status", "latency_ms", "cost_micros", "lost", "node",
)  # fmt: skip


@dataclass(frozen=True)
class Batch:
    """Local usage rows ``(after, upto]`` as the fleet's insert takes them."""

    after: int  # the fleet's watermark this batch follows (the compare-and-set's expected value)
    upto: int  # the last local id in it: the watermark once it is in
    rows: tuple[tuple[Any, ...], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(r[0] for r in self.rows)


def start_after(watermark: int, local_last: int) -> int:
    """The local id to read after: the fleet's watermark, or 0 when that is past the newest local row
    (the host's ledger was recreated, its ids began again): everything again, which the keys dedupe."""
    return watermark if watermark <= local_last else 0


def batch(after: int, rows: Sequence[Mapping[str, Any]], node: str) -> Batch | None:
    """The batch of ``rows`` (local usage rows, in id order); a row metered before v7 has no node, and
    takes this host's. None when there is nothing to ship."""
    if not rows:
        return None
    values = tuple(tuple(r[c] if c != "node" else (r[c] or node) for c in COLUMNS) for r in rows)
    return Batch(after, int(rows[-1]["id"]), values)


def caught_up(b: Batch | None) -> bool:
    """A short batch (or none) was the last: wait for the next interval rather than the next tick."""
    return b is None or len(b.rows) < BATCH_ROWS


def insert_sql(n: int) -> str:
    """One insert of ``n`` rows that skips a key already there and returns the keys it inserted."""
    one = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    return (
        f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES {', '.join([one] * n)}"
        " ON CONFLICT (key) DO NOTHING RETURNING key"
    )


def collisions(b: Batch, existing: Mapping[str, str | None]) -> list[str]:
    """The batch's keys the fleet already holds from another node (``existing``: key → its node)."""
    mine = {r[0]: r[-1] for r in b.rows}
    return sorted(k for k, n in existing.items() if k in mine and n != mine[k])
