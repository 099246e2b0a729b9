"""The egress policy through a real `bbnet meter run`: the host default from settings, a bottle's own
policy, presets, the UNMETERED refusal on LLM hosts and its per-host escape, free calls, WebSocket
upgrades, raw TCP through CONNECT, and the refusals counted in the ledger. Whatever is refused must
never reach an upstream: the simulator's and the web server's own counts say so."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import anthropic
import openai
import pytest

from bbnet.egress_ops import policy_json
from bbnet.ledger import Ledger
from bbnet.model import Bottle
from bbnet.settings import parse_policy
from meter.sim import SimHandle
from tests.meter.e2e import MeterProxy, http_client, launch_proxy, running_proxies, wait_for

DEFAULT_BOTTLE, OWN_BOTTLE = "egress-default", "egress-own"
DEFAULT_ADDRESS, OWN_ADDRESS = "127.0.0.101", "127.0.0.102"
KEY = "sk-ant-egress-test-key-0123456789"
SETTINGS = """\
fail_open: false
egress:
  presets: [pypi]
  allow:
    - hosts: [allowed.example]
      paths: [/ok]
      methods: [GET]
    - hosts: [api.anthropic.com]
      paths: [/v1/files]
      unmetered: allow
    - hosts: [127.0.0.1]
"""
OWN_POLICY = "allow:\n  - hosts: ['*.override.example']\n"
WEB_HOSTS = ("pypi.org", "allowed.example", "example.org", "x.override.example")


class Web(BaseHTTPRequestHandler):
    """A plain web server standing in for every non-LLM host; it notes each request it gets (the
    remap to it rewrites the Host header, so each test's paths are its own)."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        Web.seen.append((self.command, self.path))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = _answer


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = self.request.recv(1024)
        self.request.sendall(b"echo:" + data)


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Web)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with Ledger.open(tmp_path_factory.mktemp("egress") / "ledger.db") as opened:
        opened.add_bottle(Bottle(DEFAULT_BOTTLE, addresses=(f"{DEFAULT_ADDRESS}/32",)))
        opened.add_bottle(Bottle(OWN_BOTTLE, addresses=(f"{OWN_ADDRESS}/32",)))
        opened.set_egress(OWN_BOTTLE, policy_json(parse_policy(OWN_POLICY)), "test")
        yield opened


@pytest.fixture(scope="module")
def meter(
    ledger: Ledger, sim: SimHandle, web: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MeterProxy]:
    upstream = [f"{host}={web}" for host in WEB_HOSTS] + [f"*={sim.url}"]
    proxy = launch_proxy(
        tmp_path_factory.mktemp("egress-meter"), ledger.path, upstream, settings_text=SETTINGS
    )
    with running_proxies(proxy):
        yield proxy


def _get(meter: MeterProxy, source: str, url: str, method: str = "GET", **kw: Any) -> tuple[int, Any]:
    with http_client(meter, source) as client:
        r = client.request(method, url, **kw)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.content


def _web_hits(prefix: str) -> list[str]:
    return [f"{method} {path}" for method, path in Web.seen if path.startswith(prefix)]


def _refusals(ledger: Ledger, bottle: str, host: str, code: str) -> int:
    return sum(
        r["count"] for r in ledger.refusals() if (r["bottle"], r["host"], r["code"]) == (bottle, host, code)
    )


def test_preset_and_rule_allow_only_what_they_name(meter: MeterProxy) -> None:
    assert _get(meter, DEFAULT_ADDRESS, "https://pypi.org/simple/bbnet/") == (200, b"ok")
    assert _get(meter, DEFAULT_ADDRESS, "https://allowed.example/ok/page") == (200, b"ok")
    assert _web_hits("/ok") == ["GET /ok/page"]
    for method, path in (("GET", "/okay"), ("POST", "/ok")):  # a path prefix is element-wise; GET only
        status, body = _get(meter, DEFAULT_ADDRESS, f"https://allowed.example{path}", method)
        assert (status, body["bbnet_code"]) == (403, "EGRESS_DENIED")
    assert _web_hits("/ok") == ["GET /ok/page"]


def test_denied_host_gets_403_and_never_reaches_upstream(meter: MeterProxy, ledger: Ledger) -> None:
    before = _refusals(ledger, DEFAULT_BOTTLE, "example.org", "EGRESS_DENIED")
    status, body = _get(meter, DEFAULT_ADDRESS, "https://example.org/telemetry?token=abc")
    assert status == 403
    assert body["bbnet_code"] == "EGRESS_DENIED" and body["host"] == "example.org"
    assert "egress" in body["error"]["message"]
    assert _web_hits("/telemetry") == []
    assert wait_for(lambda: _refusals(ledger, DEFAULT_BOTTLE, "example.org", "EGRESS_DENIED") == before + 1)
    assert "token=abc" not in meter.stderr()


def test_bottle_policy_replaces_the_host_default(meter: MeterProxy) -> None:
    assert _get(meter, OWN_ADDRESS, "https://x.override.example/override-a") == (200, b"ok")
    status, body = _get(meter, OWN_ADDRESS, "https://pypi.org/simple/")  # the default's preset: not here
    assert (status, body["bbnet_code"]) == (403, "EGRESS_DENIED")
    status, body = _get(meter, DEFAULT_ADDRESS, "https://x.override.example/override-a")
    assert (status, body["bbnet_code"]) == (403, "EGRESS_DENIED")
    assert _web_hits("/override-a") == ["GET /override-a"]


def test_unmetered_path_on_llm_host_is_refused_in_the_providers_shape(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger
) -> None:
    before = sim.stats()["total"]
    client = anthropic.Anthropic(api_key=KEY, http_client=http_client(meter, DEFAULT_ADDRESS))
    with client, pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.batches.list()  # a GET the meter cannot meter
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert body["bbnet_code"] == "UNMETERED"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert sim.stats()["total"] == before  # never forwarded; and the SDK did not retry
    assert meter.stderr().count(f"refused bottle={DEFAULT_BOTTLE} host=api.anthropic.com code=UNMETERED") == 1
    assert wait_for(lambda: _refusals(ledger, DEFAULT_BOTTLE, "api.anthropic.com", "UNMETERED") == 1)


def test_escape_and_free_calls_reach_the_provider(meter: MeterProxy, sim: SimHandle) -> None:
    before = sim.stats()["by_path"]
    with http_client(meter, DEFAULT_ADDRESS) as client:
        client.get("https://api.anthropic.com/v1/files", headers={"x-api-key": KEY})  # unmetered: allow
        client.post("https://api.anthropic.com/v1/messages/count_tokens", headers={"x-api-key": KEY},
                    json={"model": "claude-sim", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    gpt = openai.OpenAI(api_key=KEY, http_client=http_client(meter, DEFAULT_ADDRESS), max_retries=0)
    with gpt, contextlib.suppress(openai.APIStatusError):  # what the simulator answers does not matter
        gpt.models.list()
    after = sim.stats()["by_path"]
    for path in ("/v1/files", "/v1/messages/count_tokens", "/v1/models"):
        assert after.get(path, 0) == before.get(path, 0) + 1, path
    status, body = _get(meter, OWN_ADDRESS, "https://api.anthropic.com/v1/files")  # not its escape
    assert (status, body["bbnet_code"]) == (403, "UNMETERED")


def test_websocket_upgrade_passes_only_where_it_is_metered(meter: MeterProxy) -> None:
    upgrade = {"upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    status, body = _get(meter, DEFAULT_ADDRESS, "https://api.openai.com/v1/chat/completions", headers=upgrade)
    assert (status, body["bbnet_code"]) == (403, "UNMETERED")
    assert body["error"]["type"] == "permission_denied"
    status, _ = _get(meter, DEFAULT_ADDRESS, "https://api.openai.com/v1/responses", headers=upgrade)
    assert status == 101  # the simulator's WebSocket took the upgrade: it was forwarded


def _tunnel(meter: MeterProxy, source: str, target: str) -> bytes:
    """CONNECT ``target`` and send a line that is neither TLS nor HTTP; what comes back."""
    with socket.create_connection(("127.0.0.1", meter.port), timeout=20, source_address=(source, 0)) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        s.sendall(b"\x00\x01 not http\n")
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                chunks.append(chunk)
                if b"not http" in b"".join(chunks):
                    break
        return b"".join(chunks)


def test_raw_tcp_needs_a_rule_for_the_whole_host(meter: MeterProxy, ledger: Ledger, echo_port: int) -> None:
    assert _tunnel(meter, DEFAULT_ADDRESS, f"127.0.0.1:{echo_port}") == b"echo:\x00\x01 not http\n"
    assert _tunnel(meter, DEFAULT_ADDRESS, f"localhost:{echo_port}") == b""
    assert _tunnel(meter, OWN_ADDRESS, f"127.0.0.1:{echo_port}") == b""  # its own policy has no such rule
    assert wait_for(lambda: _refusals(ledger, OWN_BOTTLE, "127.0.0.1", "EGRESS_DENIED") == 1)


def test_refusals_report_counts_by_bottle_host_and_code(meter: MeterProxy, ledger: Ledger) -> None:
    from tests.conftest import run_bbnet

    for _ in range(3):
        _get(meter, OWN_ADDRESS, "https://telemetry.example/v1/events", "POST", content=b"{}")
    wait_for(lambda: _refusals(ledger, OWN_BOTTLE, "telemetry.example", "EGRESS_DENIED") == 3)
    done = run_bbnet("report", "refusals", "--format", "json", "--db", str(ledger.path))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    mine = [r for r in rows if (r["bottle"], r["host"]) == (OWN_BOTTLE, "telemetry.example")]
    assert [(r["code"], r["refusals"], r["last_request"]) for r in mine] == [
        ("EGRESS_DENIED", 3, "POST /v1/events")
    ]


def test_host_default_is_audited_once(meter: MeterProxy, ledger: Ledger) -> None:
    rows = [a for a in ledger.actions() if a.action == "egress-default"]
    assert len(rows) == 1 and json.loads(rows[0].detail or "")["presets"] == ["pypi"]
