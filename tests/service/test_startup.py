"""Starting `bbnet serve`: a missing settings file means the documented defaults, an invalid one
stops startup with one line naming the key; `bbnet install` lays out the unit, settings and state."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from bbnet import settings
from tests.conftest import BBNET
from tests.service.harness import Service, cleanup, create_bottle, probe, remove_table


@pytest.mark.root
def test_missing_settings_file_means_defaults(tmp_path: Path, sim_url: str, root_lock: None) -> None:
    remove_table()
    svc = Service(tmp_path / "serve", sim_url, settings_text=None)
    with cleanup(svc):
        svc.start()
        assert not svc.settings.exists()
        assert f"no settings file at {svc.settings}: using the documented defaults" in svc.stderr()
        bottle = create_bottle(svc, "nosettings")
        assert probe(svc, bottle, "tcp", str(bottle.proxy.address), str(bottle.proxy.port))["connected"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("shutdown: explode\n", "shutdown: Input should be 'cutoff', 'freeze' or 'kill'"),
        ("lease_seconds: 0\n", "lease_seconds: Input should be greater than 0"),
        ("budget: {anthropc: 5}\n", "budget.anthropc: unknown provider"),
        ("proxy_port: [1\n", "not valid YAML at line 2"),
    ],
)
def test_invalid_settings_stop_startup(tmp_path: Path, sim_url: str, text: str, named: str) -> None:
    svc = Service(tmp_path, sim_url, settings_text=text)
    svc.settings.write_text(text)
    done = subprocess.run(svc.argv(), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith(f"bbnet serve: error: {svc.settings}: ") and named in lines[0]
    )
    assert not svc.db.exists() and not svc.confdir.exists()  # nothing was started or written


def test_install_lays_out_the_service(tmp_path: Path) -> None:
    done = subprocess.run([BBNET, "install", "--root", str(tmp_path), "--no-start", "--json"],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert len(json.loads(done.stdout)) == 3
    unit = tmp_path / "etc/systemd/system/bbnet.service"
    conf = tmp_path / "etc/bbnet/settings.yml"
    state = tmp_path / "var/lib/bbnet"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert settings.load(str(conf)) == settings.Settings()  # the written file says the defaults
    text = unit.read_text()
    assert "@BBNET@" not in text and "Type=notify" in text and "Restart=on-failure" in text
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr


def test_install_keeps_an_existing_settings_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc/bbnet/settings.yml"
    conf.parent.mkdir(parents=True)
    conf.write_text("shutdown: freeze\n")
    done = subprocess.run([BBNET, "install", "--root", str(tmp_path), "--no-start"],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert f"kept {conf}" in done.stdout
    assert conf.read_text() == "shutdown: freeze\n" and stat.S_IMODE(conf.stat().st_mode) == 0o600
