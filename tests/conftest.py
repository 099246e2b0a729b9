"""Shared test plumbing: root-only tests run (never skip) under CI=true; shared fixtures' path."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import pgserver

REPO = Path(__file__).resolve().parents[1]
# The recorded API exchanges: ``$BBNET_SHARED``, else ``shared/`` beside the repo (the team's copy),
# else the copy kept in tests/fixtures so a lone clone still tests.
_SHARED_CANDIDATES = [Path(p) for p in (os.environ.get("BBNET_SHARED"),) if p] + [
    REPO.parent / "shared",
    REPO / "tests",
]
SHARED = next(p for p in _SHARED_CANDIDATES if (p / "fixtures" / "recordings" / "recordings.har").exists())
RECORDINGS_HAR = SHARED / "fixtures" / "recordings" / "recordings.har"
BBNET = str(Path(sys.executable).parent / "bbnet")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``root`` skip without root locally, and fail without it under CI=true."""
    if "root" in item.keywords and os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("this test needs root, and CI=true forbids skipping it")
        pytest.skip("needs root")


def run_bbnet(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed `bbnet` command (the same entry point users run)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [BBNET, *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


def need_pg() -> None:
    """Skip without PostgreSQL's server binaries; fail under CI=true, which forbids skipping."""
    try:
        pgserver.bindir()
    except pgserver.PgUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))


def agent_corpus() -> ModuleType:
    """bench/agent_corpus.py (bench/ is not a package): the agents' request bodies."""
    spec = importlib.util.spec_from_file_location("agent_corpus", REPO / "bench" / "agent_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """One real PostgreSQL server for the session."""
    need_pg()
    with pgserver.running() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: pgserver.PgServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh ledger lives, once per backend: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return str(request.getfixturevalue("pg_url"))


MetricSamples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_metrics(address: str) -> MetricSamples:
    """GET ``http://address/metrics`` and read it with prometheus_client's own parser:
    ``{(sample name, labels): value}``."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


@pytest.fixture(autouse=True)
def _one_kernel_test_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """Root tests share one nftables table and address pool: serialise them across processes."""
    if "root" not in request.keywords:
        yield
        return
    with open("/tmp/bbnet-root-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
