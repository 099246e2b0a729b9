"""Fixtures for the service's end-to-end tests.

A module shares one `bbnet serve`, so the root lock (one nftables table per host) is held for the
whole module, not per test: this replaces tests/conftest.py's per-test lock here (taking it twice
from one process would deadlock: flock locks belong to the open file).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest

from meter.sim import start_sim
from tests.service.harness import Agent, Service, cleanup, remove_table


@pytest.fixture(scope="module")
def root_lock() -> Iterator[None]:
    with open("/tmp/bbnet-root-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(autouse=True)
def _one_kernel_test_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    if "root" in request.keywords:
        request.getfixturevalue("root_lock")
    yield


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """The provider simulator on the host's loopback: bottles reach it only through the meter."""
    with start_sim(chunk_delay_ms=2) as handle:
        yield handle.url


@pytest.fixture(scope="module")
def service(root_lock: None, sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One `bbnet serve` for the module, with a settings file; torn down with all it made."""
    remove_table()  # a table some crashed run left would be replaced anyway: start from nothing
    svc = Service(Path(tmp_path_factory.mktemp("serve")), sim_url, settings_text="lease_seconds: 2\n")
    with cleanup(svc):
        svc.start()
        yield svc


@pytest.fixture
def agents(service: Service) -> Iterator[list[Agent]]:
    """Agents a test starts; stopped at the end of the test, also when it fails."""
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()
