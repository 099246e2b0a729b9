"""What a report is: typed columns and rows of plain values, ready for any output format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

type Cell = str | int | float | None  # one value of a report row

KINDS = ("str", "int", "float")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # str | int | float
    unit: str = ""  # shown in table headers: tokens, usd, ...


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def records(self) -> list[dict[str, Cell]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Series:
    """A measure over time, for charts: (bucket label, value) pairs, oldest first."""

    measure: str
    bucket: str  # hour | day
    points: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Report:
    main: Table
    extra: tuple[Table, ...] = ()  # e.g. the unpriced models next to a cost report
    series: Series | None = None


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=65536)
def bucket_label(key: str, start: int) -> str:
    """An hour bucket as ``2025-01-31T14:00Z``, a day bucket as ``2025-01-31`` (UTC)."""
    moment = datetime.fromtimestamp(start, UTC)
    return moment.strftime("%Y-%m-%dT%H:00Z") if key == "hour" else moment.strftime("%Y-%m-%d")
