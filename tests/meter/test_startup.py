"""What the meter does as it starts, so that its first call does not pay for it on the event loop."""

from __future__ import annotations

import subprocess
import sys

# a fresh interpreter: this one may have priced something already
_PROBE = """
import asyncio, sys
from meter.addon import Meter
before = "genai_prices.data_snapshot" in sys.modules
async def start() -> None:
    Meter(None).running()
asyncio.run(start())
print(before, "genai_prices.data_snapshot" in sys.modules)
"""


def test_the_price_table_is_loaded_before_the_first_call() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "True"], out.stderr
