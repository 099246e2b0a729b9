"""Light pieces the CLI needs before (or without) loading settings: limits and the settings error.

Kept apart from :mod:`bbnet.settings` so that commands which never read the settings file do not
import pydantic.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from bbnet.model import MICROS_PER_USD


class SettingsError(Exception):
    """The settings file cannot be used; the message names the file and the key."""


_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_limit(text: str, unit: str) -> int:
    """A limit as the CLI takes it: tokens (``500000``, ``500k``, ``5M``) or USD (``20``, ``$12.50``).

    Returns tokens, or micro-USD for ``usd``.
    """
    raw = text.strip()
    if unit == "usd":
        try:
            value = Decimal(raw.removeprefix("$"))
        except InvalidOperation:
            raise ValueError(f"invalid USD limit {text!r}: expected a number such as 20 or 12.50") from None
        if not value.is_finite() or value < 0:
            raise ValueError(f"invalid USD limit {text!r}: must be a number >= 0")
        return int(value * MICROS_PER_USD)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG]?)", raw.replace("_", ""))
    if not m:
        raise ValueError(f"invalid token limit {text!r}: expected a whole number >= 0, e.g. 500000 or 500k")
    value = Decimal(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if value != value.to_integral_value():
        raise ValueError(f"invalid token limit {text!r}: must be a whole number of tokens")
    return int(value)
