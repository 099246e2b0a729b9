"""Bad input through a real `bbnet meter run`: answers that lack usage, streams cut short or not
UTF-8 and malformed requests reach the client unchanged, nothing crashes, and
the ledger ends with one flagged (estimated) row per answered call or a released hold; non-LLM
traffic is refused by the default egress policy."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget
from bbnet.names import Scope
from tests.meter.e2e import MeterProxy, http_client, launch_proxy, running_proxies, wait_for

ADDRESS = "127.0.0.91"
BOTTLE = "bad-input"
NO_USAGE = json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                       "content": [{"type": "text", "text": "hi"}]}).encode()  # fmt: skip
CUT_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"claude-sonnet-4-5",'
    b'"usage":{"input_tokens":40,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del'
)
NOT_UTF8 = b"event: ping\ndata: \xff\xfe\xfa not utf-8 \xc3\x28\n\n" + b"data: {broken json\n\n"
PAGE = b"<html>not an LLM</html>"


class Upstream(BaseHTTPRequestHandler):
    """A provider that misbehaves in every way the meter must survive."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        if close:
            self.send_header("connection", "close")
        else:
            self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if close:
            self.close_connection = True

    def do_GET(self) -> None:
        self._send(200, PAGE, "text/html")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            doc = json.loads(body)
        except ValueError:
            self._send(400, b'{"type":"error","error":{"type":"invalid_request_error"}}', "application/json")
            return
        kind = doc.get("metadata", {}).get("user_id")
        if kind == "cut":
            self._send(200, CUT_STREAM, "text/event-stream", close=True)
        elif kind == "not-utf8":
            self._send(200, NOT_UTF8, "text/event-stream", close=True)
        else:
            self._send(200, NO_USAGE, "application/json")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with Ledger.open(tmp_path_factory.mktemp("bad") / "ledger.db") as opened:
        opened.add_bottle(Bottle(BOTTLE, addresses=(f"{ADDRESS}/32",)))
        opened.set_budget(Budget(Scope.of_bottle(BOTTLE), "*", "tokens", 10**9))
        yield opened


@pytest.fixture(scope="module")
def meter(ledger: Ledger, upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeterProxy]:
    proxy = launch_proxy(Path(tmp_path_factory.mktemp("bad-meter")), ledger.path, [f"*={upstream}"])
    with running_proxies(proxy):
        yield proxy


def _post(meter: MeterProxy, body: bytes) -> tuple[int, bytes]:
    with http_client(meter, ADDRESS) as client:
        r = client.post("https://api.anthropic.com/v1/messages", content=body,
                        headers={"content-type": "application/json", "x-api-key": "sk-ant-bad-input-key"})  # fmt: skip
        return r.status_code, r.content


def _request(kind: str, stream: bool = False) -> bytes:
    return json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 50, "stream": stream,
                       "metadata": {"user_id": kind}, "messages": [{"role": "user", "content": "hi " * 40}]}).encode()  # fmt: skip


def _rows_after(ledger: Ledger, before: int) -> list[dict[str, Any]]:
    return [r for r in ledger.usage(bottle=BOTTLE, limit=10_000) if r["id"] > before]


def _last_id(ledger: Ledger) -> int:
    rows = ledger.usage(bottle=BOTTLE, limit=10_000)
    return rows[-1]["id"] if rows else 0


def test_answer_without_usage_is_committed_as_flagged_estimate(meter: MeterProxy, ledger: Ledger) -> None:
    before = _last_id(ledger)
    assert _post(meter, _request("plain")) == (200, NO_USAGE)
    [row] = wait_for(lambda: _rows_after(ledger, before))
    assert row["estimated"] == 1 and row["input_tokens"] > 0 and row["output_tokens"] == 0
    assert not [r for r in ledger.reservations() if r["bottle"] == BOTTLE]


def test_truncated_stream_reaches_client_and_commits_what_it_showed(
    meter: MeterProxy, ledger: Ledger
) -> None:
    before = _last_id(ledger)
    status, body = _post(meter, _request("cut", stream=True))
    assert (status, body) == (200, CUT_STREAM)
    [row] = wait_for(lambda: _rows_after(ledger, before))
    assert (row["input_tokens"], row["output_tokens"]) == (40, 1) and row["stream"] == 1
    assert not [r for r in ledger.reservations() if r["bottle"] == BOTTLE]


def test_invalid_utf8_and_broken_json_pass_through_unchanged(meter: MeterProxy, ledger: Ledger) -> None:
    before = _last_id(ledger)
    assert _post(meter, _request("not-utf8", stream=True)) == (200, NOT_UTF8)
    [row] = wait_for(lambda: _rows_after(ledger, before))
    assert row["estimated"] == 1


def test_malformed_request_is_forwarded_and_its_hold_released(meter: MeterProxy, ledger: Ledger) -> None:
    before = _last_id(ledger)
    status, _ = _post(meter, b"{this is not json")
    assert status == 400  # the provider's verdict, not the meter's
    wait_for(lambda: not [r for r in ledger.reservations() if r["bottle"] == BOTTLE])
    assert _rows_after(ledger, before) == []


def test_non_llm_traffic_is_refused_by_default(meter: MeterProxy, ledger: Ledger) -> None:
    """No ``egress:`` in settings: only the LLM providers; nothing else leaves (see test_e2e_egress)."""
    before = _last_id(ledger)
    with http_client(meter, ADDRESS) as client:
        r = client.get("https://example.org/some/page", headers={"x-api-key": "sk-ant-bad-input-key"})
    assert r.status_code == 403 and r.json()["bbnet_code"] == "EGRESS_DENIED"
    assert r.content != PAGE  # the upstream's page never came back: it was never asked
    assert _rows_after(ledger, before) == []
    assert "sk-ant-bad-input-key" not in meter.stderr()
