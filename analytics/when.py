"""Parse the WHEN of ``--since`` / ``--until``: ISO dates and times, or an age like ``30m``, ``7d``.

Times without a zone are UTC, like every time bbnet stores; the result is epoch seconds.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from analytics.errors import ReportError

_AGE_RE = re.compile(r"^(\d{1,9})([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float, option: str = "--since") -> float:
    """Epoch seconds for ``text``: ``now`` minus an age (``90s``, ``30m``, ``1h``, ``7d``, ``2w``), or ISO."""
    value = text.strip()
    age = _AGE_RE.fullmatch(value)
    if age:
        return now - int(age.group(1)) * _SECONDS[age.group(2)]
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ReportError(
            f"invalid {option} {text!r}: use an ISO date or time (2025-01-31, 2025-01-31T14:00Z) "
            "or an age like 30m, 1h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def window(since: str | None, until: str | None, now: float) -> tuple[float | None, float | None]:
    """The half-open window [since, until) in epoch seconds; ``None`` leaves that side open."""
    start = parse_when(since, now, "--since") if since is not None else None
    end = parse_when(until, now, "--until") if until is not None else None
    if start is not None and end is not None and start >= end:
        raise ReportError(f"--since {since!r} is not before --until {until!r}")
    return start, end
