"""Fixtures for the real agent CLIs: one simulator and one `bbnet serve` per module, the root lock
held for the whole module (as in tests/service), and the CLIs installed by scripts/install-agents.sh.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meter.sim import SimHandle, start_sim
from tests.agents.clis import ALL
from tests.service.conftest import _one_kernel_test_at_a_time, root_lock
from tests.service.harness import Service, cleanup, remove_table

__all__ = ["_one_kernel_test_at_a_time", "root_lock"]


@pytest.fixture(scope="module")
def installed() -> None:
    missing = [str(cli.binary) for cli in ALL if not cli.binary.exists()]
    if missing:
        message = f"agent CLIs not installed ({', '.join(missing)}): run scripts/install-agents.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    """The providers, on the host's loopback: bottles reach it only through the meter."""
    with start_sim(chunk_delay_ms=2) as handle:
        yield handle


@pytest.fixture(scope="module")
def service(
    installed: None, root_lock: None, sim: SimHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One `bbnet serve` for the module; leases long enough that no live call is billed as lost."""
    remove_table()
    svc = Service(Path(tmp_path_factory.mktemp("serve")), sim.url, settings_text="lease_seconds: 300\n")
    with cleanup(svc):
        svc.start()
        yield svc
