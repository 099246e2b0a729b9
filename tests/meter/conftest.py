"""The meter tests' simulators: one plain and one slow per module (modules that need another kind,
a replaying one say, define their own ``sim``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meter.sim import SimHandle, start_sim
from tests.meter.e2e import SLOW_CHUNK_DELAY_MS


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with start_sim() as handle:
        yield handle


@pytest.fixture(scope="module")
def slow_sim() -> Iterator[SimHandle]:
    """Streams with real duration: a disconnect or a cut lands in the middle of an answer."""
    with start_sim(chunk_delay_ms=SLOW_CHUNK_DELAY_MS) as handle:
        yield handle
