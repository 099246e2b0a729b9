"""Soft-limit webhooks against a real HTTP server on a thread: delivered, retried, audited; the
URL's credentials go as Basic auth and never into a log line or an audit row."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bbnet.ledger import Ledger
from bbnet.model import PoolView
from bbnet.settings import WebhookSettings
from bbnet.soft_limits import DELIVERY, Alert
from enforcer.webhook import Webhook, safe_target, split_userinfo

SECRET = "s3cr3t-token"  # noqa: S105 - what must never show up in a log or a row


@dataclass
class Receiver:
    """An HTTP server that answers each POST with the next status of ``answers`` (then 200)."""

    answers: list[int] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.posts.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            status = got.answers.pop(0) if got.answers else 200
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield got
    server.shutdown()
    server.server_close()


@pytest.fixture
def ledger(db: Path) -> Iterator[Ledger]:
    with Ledger.open(db) as opened:
        yield opened


ALERT = Alert(PoolView("global", "openai", "tokens", "day", 1_764_720_000.0, 1000, 812, 0), 80)


def hook(url: str, ledger: Ledger, attempts: int = 3) -> Webhook:
    return Webhook(WebhookSettings(url=url, timeout=5, attempts=attempts), ledger, pause=0.01)


def deliveries(ledger: Ledger) -> list[Any]:
    return [a for a in ledger.actions() if a.action == DELIVERY]


def test_delivered_with_basic_auth_and_audited(receiver: Receiver, ledger: Ledger,
                                               caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    url = f"http://alerts:{SECRET}@127.0.0.1:{receiver.port}/hooks/bbnet?x=1"
    w = hook(url, ledger)
    w.start()
    w.submit(ALERT)
    w.stop()
    [post] = receiver.posts
    assert post["path"] == "/hooks/bbnet?x=1"
    assert post["body"] == ALERT.payload() and post["body"]["percent"] == 81.2
    assert (
        base64.b64decode(post["headers"]["Authorization"].removeprefix("Basic "))
        == f"alerts:{SECRET}".encode()
    )
    [row] = deliveries(ledger)
    assert row.result == "ok" and row.bottle is None
    assert json.loads(row.detail or "{}")["attempts"] == 1
    assert SECRET not in json.dumps([a.__dict__ for a in ledger.actions()]) and SECRET not in caplog.text


def test_retried_then_delivered(receiver: Receiver, ledger: Ledger) -> None:
    receiver.answers = [503, 500]
    assert hook(f"http://127.0.0.1:{receiver.port}/", ledger).deliver(ALERT)
    assert len(receiver.posts) == 3
    detail = json.loads(deliveries(ledger)[0].detail or "{}")
    assert (detail["attempts"], detail["status"], detail["target"]) == (
        3,
        200,
        f"http://127.0.0.1:{receiver.port}",
    )


def test_a_client_error_is_not_retried(receiver: Receiver, ledger: Ledger) -> None:
    receiver.answers = [404]
    assert not hook(f"http://127.0.0.1:{receiver.port}/", ledger).deliver(ALERT)
    assert len(receiver.posts) == 1
    assert deliveries(ledger)[0].result == "error: HTTP 404"


def test_unreachable_fails_after_its_attempts(ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # nothing listens on this port once the socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caplog.set_level(logging.WARNING)
    assert not hook(f"http://u:{SECRET}@127.0.0.1:{port}/x", ledger, attempts=2).deliver(ALERT)
    [row] = deliveries(ledger)
    assert (
        row.result.startswith("error: cannot connect: ") and json.loads(row.detail or "{}")["attempts"] == 2
    )
    assert "failed after 2 attempt(s)" in caplog.text
    assert SECRET not in caplog.text and SECRET not in (row.detail or "") + row.result + row.reason


def test_userinfo_helpers() -> None:
    url, headers = split_userinfo("https://a%40b:p%3Aw@[::1]:8443/p?q=1")
    assert url == "https://[::1]:8443/p?q=1"
    assert base64.b64decode(headers["Authorization"][6:]) == b"a@b:p:w"
    assert split_userinfo("http://h/x") == ("http://h/x", {})
    assert safe_target("https://u:p@h.example:8443/secret/path?token=t") == "https://h.example:8443"
