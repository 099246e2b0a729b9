"""vagrant/: the provisioning script runs here (installing under a temporary root, starting
nothing), and the Vagrantfile is one vagrant accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

VAGRANT_DIR = REPO / "vagrant"
HOST_UNIT = Path("/etc/systemd/system/bbnet.service")


def _provision(root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BBNET_")}
    return subprocess.run(
        ["bash", str(VAGRANT_DIR / "provision.sh")], env={**env, "BBNET_INSTALL_ROOT": str(root)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.root
def test_provision_installs_under_a_root_and_is_idempotent(tmp_path: Path) -> None:
    host_unit_before = HOST_UNIT.read_bytes() if HOST_UNIT.exists() else None
    first = _provision(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    unit = tmp_path / "etc/systemd/system/bbnet.service"
    settings = tmp_path / "etc/bbnet/settings.yml"
    state = tmp_path / "var/lib/bbnet"
    assert f"ExecStart={REPO / '.venv/bin/bbnet'} serve" in unit.read_text()
    assert settings.stat().st_mode & 0o777 == 0o600
    assert state.is_dir() and state.stat().st_mode & 0o777 == 0o700
    settings.write_text("proxy_port: 9090\n")  # an operator's edit survives provisioning again
    second = _provision(tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"kept {settings}" in second.stdout
    assert settings.read_text() == "proxy_port: 9090\n"
    assert (HOST_UNIT.read_bytes() if HOST_UNIT.exists() else None) == host_unit_before


def test_provision_refuses_a_missing_repository(tmp_path: Path) -> None:
    env = {**os.environ, "BBNET_REPO": str(tmp_path / "nowhere"), "BBNET_INSTALL_ROOT": str(tmp_path)}
    done = subprocess.run(["bash", str(VAGRANT_DIR / "provision.sh")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1
    assert "provision:" in done.stderr


def test_provision_script_is_strict_bash() -> None:
    text = (VAGRANT_DIR / "provision.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(VAGRANT_DIR / "provision.sh")], check=True)


def _require(tool: str) -> None:
    """`make test` installs the tool; under CI=true its absence is a failure, never a skip — unless
    this distribution does not package vagrant at all (Ubuntu 24.04+), which is said, not hidden."""
    if shutil.which(tool) is not None:
        return
    packaged = (
        subprocess.run(["apt-cache", "show", "vagrant"], capture_output=True, check=False).returncode == 0
    )
    if os.environ.get("CI") == "true" and packaged:
        pytest.fail(f"{tool} is not installed (make test-vagrant installs it)")
    pytest.skip(
        f"{tool} is not installed" + ("" if packaged else ": this distribution has no vagrant package")
    )


@pytest.mark.vagrant
def test_vagrantfile_validates(tmp_path: Path) -> None:
    _require("vagrant")
    env = {
        **os.environ,
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotfile"),
        "VAGRANT_HOME": str(tmp_path / "home"),
    }
    done = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT_DIR, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "validated successfully" in done.stdout
    assert not (VAGRANT_DIR / ".vagrant").exists()


@pytest.mark.vagrant
def test_vagrantfile_is_ruby() -> None:
    _require("ruby")
    done = subprocess.run(["ruby", "-c", str(VAGRANT_DIR / "Vagrantfile")], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "Syntax OK" in done.stdout
