"""`bbnet install`: put the systemd unit, the settings file and the state directory in place."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from bbnet.defaults import DEFAULT_ADDRESS_POOL, DEFAULT_PROXY_PORT

UNIT_PATH = "etc/systemd/system/bbnet.service"
SETTINGS_PATH = "etc/bbnet/settings.yml"
STATE_DIR = "var/lib/bbnet"

DEFAULT_SETTINGS = f"""\
# bbnet host settings (see README "Settings"). Every key is optional.
budget: {{}}              # global token pools by provider, e.g. {{anthropic: 5000000}}
bottle_defaults: {{}}     # pools each new bottle gets, e.g. {{anthropic: 500000}}
usd: {{period: month}}    # add global: 200 and/or bottle_default: 20 for USD pools
period: total
shutdown: cutoff        # cutoff | freeze | kill
fail_open: false
auto_restore_on_new_period: false
lease_seconds: 300
address_pool: {DEFAULT_ADDRESS_POOL}
proxy_port: {DEFAULT_PROXY_PORT}
metrics: {{enabled: true, listen: "127.0.0.1:9464"}}   # Prometheus /metrics (README "Metrics")
soft_limits: []         # e.g. [50, 80, 95]: percents of each pool's limit that alert once per period
# webhook: {{url: "https://alerts.example/bbnet", timeout: 5, attempts: 3}}   # soft-limit alerts
"""


def unit_text(bbnet: str) -> str:
    template = resources.files("enforcer").joinpath("bbnet.service").read_text()
    return template.replace("@BBNET@", bbnet)


def bbnet_command() -> str:
    """The absolute path of this installation's `bbnet` (the venv's console script)."""
    beside = Path(sys.executable).parent / "bbnet"
    found = str(beside) if beside.exists() else shutil.which("bbnet")
    if not found:
        raise FileNotFoundError("cannot find the bbnet command next to this Python or on PATH")
    return str(Path(found).resolve()) if not beside.exists() else str(beside)


def install(root: Path, bbnet: str, *, start: bool) -> list[str]:
    """Write what the service needs under ``root``; never overwrite an existing settings file."""
    done: list[str] = []
    unit = root / UNIT_PATH
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(unit_text(bbnet))
    unit.chmod(0o644)
    done.append(f"wrote {unit}")
    settings = root / SETTINGS_PATH
    settings.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.exists():
        done.append(f"kept {settings}")
    else:
        settings.write_text(DEFAULT_SETTINGS)
        done.append(f"wrote {settings}")
    settings.chmod(0o600)
    state = root / STATE_DIR
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)
    done.append(f"made {state}")
    if start:
        if not Path("/run/systemd/system").is_dir():
            done.append("systemd is not running here: start it with `bbnet serve` or boot with systemd")
        else:
            for argv in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "bbnet.service"]):
                subprocess.run(argv, check=True)
                done.append("ran " + " ".join(argv))
    return done
