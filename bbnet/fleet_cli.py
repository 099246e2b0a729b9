"""`bbnet budget list`'s fleet part: the fleet's global pools, and each node's slice of them."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from bbnet.clikit import console
from bbnet.fleet_lease import open_fleet
from bbnet.model import MICROS_PER_USD
from bbnet.pg import redact


def _scaled(unit: str, value: int) -> float:
    return value / MICROS_PER_USD if unit == "usd" else value


def _amount(unit: str, value: int) -> str:
    return f"${value / MICROS_PER_USD:,.4f}" if unit == "usd" else f"{value:,}"


def fleet_totals(url: str, now: float | None = None) -> list[dict[str, Any]]:
    """Each fleet pool in its current period: limit, used, reserved by slices, and per node."""
    at = time.time() if now is None else now
    with open_fleet(url) as f:
        pools = [p for p in f.pools(at) if p.scope == "global"]
        leases = f.fleet_leases()
    out = []
    for p in pools:
        nodes = [
            {"node": r["node"], "granted": _scaled(p.unit, r["granted"]), "consumed": _scaled(p.unit, r["consumed"]),
             "held": _scaled(p.unit, r["granted"] - r["consumed"]), "expires_in": round(r["expires_at"] - at, 1)}
            for r in leases
            if (r["scope"], r["provider"], r["unit"], r["period"], r["period_start"])
            == (p.scope, p.provider, p.unit, p.period, p.period_start)
        ]  # fmt: skip
        out.append({"scope": p.scope, "provider": p.provider, "unit": p.unit, "period": p.period,
                    "period_start": p.period_start, "limit": _scaled(p.unit, p.limit),
                    "used": _scaled(p.unit, p.used), "reserved": _scaled(p.unit, p.reserved),
                    "remaining": _scaled(p.unit, p.remaining), "nodes": nodes})  # fmt: skip
    return out


def print_fleet(url: str, totals: list[dict[str, Any]]) -> None:
    table = Table("scope", "provider", "unit", "period", "node", "limit", "used", "reserved (slices)", "remaining",
                  title=f"fleet {redact(url)}")  # fmt: skip
    for p in totals:
        unit = p["unit"]
        scale = MICROS_PER_USD if unit == "usd" else 1

        def fmt(v: float, unit: str = unit, scale: int = scale) -> str:
            return _amount(unit, round(v * scale))

        table.add_row(p["scope"], p["provider"], unit, p["period"], "all", fmt(p["limit"]), fmt(p["used"]),
                      fmt(p["reserved"]), fmt(p["remaining"]))  # fmt: skip
        for n in p["nodes"]:
            table.add_row("", "", "", "", n["node"], "", fmt(n["consumed"]), fmt(n["held"]), "",
                          style="dim" if n["expires_in"] <= 0 else None)  # fmt: skip
    console.print(table if totals else f"fleet {redact(url)}: no global budgets")
