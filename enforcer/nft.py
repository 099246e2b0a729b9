"""Apply netrules output to the kernel through libnftables' JSON API.

Every change is one ``json_cmd`` call, which libnftables sends as one netlink batch: it applies
entirely or not at all. Only the ``netdev bbnet`` table is ever named, so nothing else on the host
is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from enforcer.errors import EnforcerError
from netrules import render
from netrules.types import BottleNet


class NftError(EnforcerError):
    """libnftables refused a batch."""


def _load() -> Any:
    try:
        import nftables  # imported here: a missing system library is reported, not crashed on

        return nftables.Nftables()
    except (ImportError, OSError) as exc:
        raise EnforcerError(
            f"libnftables is not available ({exc}): install Debian's libnftables1 and PyPI's pip-nftables"
        ) from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


class Nft:
    """A libnftables context that speaks JSON and knows only bbnet's table."""

    def __init__(self) -> None:
        self._lib = _load()
        self._lib.set_json_output(True)

    def run(self, commands: list[render.Command]) -> None:
        """Send ``commands`` as one transaction; raise with libnftables' first error line."""
        if not commands:
            return
        rc, _out, err = self._lib.json_cmd(render.document(commands))
        if rc != 0:
            if os.geteuid() != 0:
                raise NftError("changing nftables needs root (run bbnet as root)")
            raise NftError(f"nftables refused the change: {_first_line(err)}")

    def read_table(self) -> list[dict[str, Any]] | None:
        """bbnet's table as libnftables lists it, or None when it is not installed."""
        rc, out, _err = self._lib.json_cmd(
            {"nftables": [{"list": {"table": {"family": render.FAMILY, "name": render.TABLE}}}]}
        )
        if rc != 0:
            return None
        return [item for item in out["nftables"] if "metainfo" not in item]

    def apply_table(self, bottles: Iterable[BottleNet], cutoff: Iterable[str]) -> None:
        """Create or replace the whole table in one transaction, then read it back to verify."""
        bottles, cutoff = list(bottles), sorted(set(cutoff))
        self.run(render.full_table(bottles, cutoff))
        self.verify(bottles, cutoff)

    def verify(self, bottles: Iterable[BottleNet], cutoff: Iterable[str]) -> None:
        """Raise unless the kernel holds a base chain pair for every bottle and exactly ``cutoff``."""
        listing = self.read_table()
        if listing is None:
            raise NftError(f"verification failed: table {render.FAMILY} {render.TABLE} is missing")
        chains = {item["chain"]["name"] for item in listing if "chain" in item}
        for bottle in bottles:
            for name in (render.ingress_chain(bottle.veth), render.egress_chain(bottle.veth)):
                if name not in chains:
                    raise NftError(f"verification failed: chain {name} is missing")
        kernel_cutoff = set(_cutoff_counters(listing))
        if kernel_cutoff != set(cutoff):
            raise NftError(
                f"verification failed: cutoff set holds {sorted(kernel_cutoff)}, not {sorted(cutoff)}"
            )

    def cutoff_counters(self) -> dict[str, tuple[int, int]]:
        """Per cut-off veth: packets and bytes dropped since it was cut."""
        listing = self.read_table()
        return _cutoff_counters(listing) if listing is not None else {}

    def installed(self) -> bool:
        return self.read_table() is not None


def _cutoff_counters(listing: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    for item in listing:
        spec = item.get("set")
        if spec and spec["name"] == render.CUTOFF:
            counters: dict[str, tuple[int, int]] = {}
            for element in spec.get("elem", []):
                if isinstance(element, dict):
                    inner = element["elem"]
                    counter = inner.get("counter", {})
                    counters[inner["val"]] = (counter.get("packets", 0), counter.get("bytes", 0))
                else:
                    counters[element] = (0, 0)
            return counters
    return {}
