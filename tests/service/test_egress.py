"""Egress policy with a real bottle: `bbnet bottle create --egress` in a netns behind `bbnet serve`;
HTTPS from inside the bottle through the meter is refused or forwarded by the bottle's own policy,
`bbnet bottle egress` changes it (audited), a bad policy file changes nothing, and `bbnet doctor`
shows what is in force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.service.harness import PYTHON, BottleInfo, Service, actions, create_bottle, eventually

pytestmark = pytest.mark.root

# Runs inside the bottle: one HTTPS GET through the meter; prints the status and bbnet_code.
FETCH = """
import json, sys, httpx2
proxy, ca, url = sys.argv[1:4]
with httpx2.Client(proxy=proxy, verify=ca, timeout=30, trust_env=False) as c:
    r = c.get(url)
try:
    code = r.json().get("bbnet_code")
except ValueError:
    code = None
print(json.dumps({"status": r.status_code, "code": code}))
"""


def fetch(service: Service, bottle: BottleInfo, url: str) -> dict[str, object]:
    out = service.ok(
        "bottle", "exec", bottle.name, "--", PYTHON, "-c", FETCH, bottle.proxy_url, service.ca, url
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_bottle_policy_from_create_is_enforced_and_changed(service: Service, tmp_path: Path) -> None:
    own = tmp_path / "own.yml"
    own.write_text("allow:\n  - hosts: [docs.internal.example]\n    paths: [/guide]\n")
    bottle = create_bottle(service, "egown", "--egress", str(own))
    assert fetch(service, bottle, "https://docs.internal.example/guide/x")["code"] is None  # forwarded
    assert fetch(service, bottle, "https://docs.internal.example/admin") == {
        "status": 403,
        "code": "EGRESS_DENIED",
    }
    assert fetch(service, bottle, "https://api.anthropic.com/v1/files") == {
        "status": 403,
        "code": "UNMETERED",
    }

    doctor = service.bbnet("doctor", "--json", "--db", str(service.db), "--settings", str(service.settings),
                           "--confdir", str(service.confdir), "--proxy", f"127.0.0.1:{service.port}")  # fmt: skip
    egress = {c["name"]: c for c in json.loads(doctor.stdout)}["egress"]
    assert egress["status"] == "ok" and "host default: LLM providers only" in egress["detail"]
    assert "1 of" in egress["detail"]

    bad = tmp_path / "bad.yml"
    bad.write_text("allow:\n  - hosts: [a.example]\n    method: [GET]\n")
    before = service.ok("bottle", "egress", bottle.name, "--json")
    done = service.bbnet("bottle", "egress", bottle.name, str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"bbnet bottle egress: error: {bad}: allow.0.method: unknown key"
    ]
    assert service.ok("bottle", "egress", bottle.name, "--json") == before

    service.ok("bottle", "egress", bottle.name, "--default", "--reason", "test")
    shown = json.loads(service.ok("bottle", "egress", bottle.name, "--json"))
    assert shown["source"] == "host default" and shown["policy"] == {"allow": [], "presets": []}
    eventually(lambda: fetch(service, bottle, "https://docs.internal.example/guide/x")["code"] == "EGRESS_DENIED",
               30, "the host default in force for the bottle")  # fmt: skip
    rows = [a for a in actions(service) if a.bottle == bottle.name and a.action == "egress"]
    assert [(a.actor.split(":")[0], a.reason) for a in rows] == [("cli", "create"), ("operator", "test")]
    service.ok("bottle", "rm", bottle.name)
