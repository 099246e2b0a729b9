"""Soft-limit webhooks: POST each alert's JSON from a worker thread, off the controller's path.

Each alert is tried up to ``attempts`` times (``timeout`` seconds each, a short growing pause
between); a connection error, a timeout, a 429 or a 5xx is retried, any other answer is final. How
it went is one ``actions`` row (``soft_limit_webhook``, result ``ok`` or ``error: ...``). The URL
may carry credentials (``https://user:token@host/...``): the userinfo is sent as HTTP Basic auth
and neither it nor the URL is ever logged or audited — rows and log lines name the host only.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from bbnet import metrics
from bbnet.ledger import Ledger, LedgerError
from bbnet.settings import WebhookSettings
from bbnet.soft_limits import DELIVERY, Alert

log = logging.getLogger("bbnet.webhook")
ACTOR = "controller"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Failed(Exception):
    """One attempt failed; ``retry`` says whether another may succeed."""

    def __init__(self, why: str, retry: bool) -> None:
        super().__init__(why)
        self.retry = retry


def split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """The URL without userinfo and the headers that carry it instead (pure)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    auth = {"Authorization": "Basic " + base64.b64encode(creds).decode()}
    return urlunsplit(parts._replace(netloc=netloc)), auth


def safe_target(url: str) -> str:
    """What log lines and audit rows may say about the URL: its scheme and host only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class Webhook:
    def __init__(self, settings: WebhookSettings, ledger: Ledger, *, pause: float = 0.5) -> None:
        self.settings = settings
        self.ledger = ledger  # safe to share between threads
        self.pause = pause  # seconds before the second attempt; doubled for each next one
        self.target = safe_target(settings.url)
        self._url, self._headers = split_userinfo(settings.url)
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bbnet-webhook", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``), then end the worker."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None

    def submit(self, alert: Alert) -> None:
        """Queue ``alert``; never blocks."""
        self._queue.put(alert)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            self.deliver(alert)

    def deliver(self, alert: Alert) -> bool:
        """Try ``alert`` up to ``attempts`` times; audit and return how it went."""
        body = json.dumps(alert.payload(), sort_keys=True).encode()
        started = time.perf_counter()
        why, attempt = "", 0
        for attempt in range(1, self.settings.attempts + 1):
            try:
                status = self._post(body)
            except Failed as e:
                why = str(e)
                if e.retry and attempt < self.settings.attempts:
                    time.sleep(self.pause * 2 ** (attempt - 1))
                    continue
                break
            self._audit(alert, "ok", started, {"attempts": attempt, "status": status})
            metrics.webhook(True)
            return True
        log.warning("soft-limit webhook to %s failed after %d attempt(s): %s", self.target, attempt, why)
        self._audit(alert, f"error: {why}", started, {"attempts": attempt})
        metrics.webhook(False)
        return False

    def _post(self, body: bytes) -> int:
        headers = {"Content-Type": "application/json", "User-Agent": "bbnet", **self._headers}
        req = urllib.request.Request(self._url, data=body, headers=headers, method="POST")  # noqa: S310 (http/https only: settings)
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:  # noqa: S310
                return int(resp.status)
        except urllib.error.HTTPError as e:
            raise Failed(f"HTTP {e.code}", e.code in RETRY_STATUS) from None
        except urllib.error.URLError as e:  # its reason never holds the URL
            raise Failed(f"cannot connect: {_reason(e.reason)}", True) from None
        except (TimeoutError, OSError) as e:
            raise Failed(_reason(e), True) from None

    def _audit(self, alert: Alert, result: str, started: float, extra: dict[str, object]) -> None:
        p = alert.pool
        detail = {"scope": p.scope, "provider": p.provider, "unit": p.unit, "period_start": p.period_start,
                  "threshold": alert.threshold, "target": self.target, **extra}  # fmt: skip
        reason = f"soft limit {alert.threshold}% of {p.scope} {p.provider} {p.unit}"
        try:
            self.ledger.record_action(alert.bottle, DELIVERY, ACTOR, reason, result,
                                      (time.perf_counter() - started) * 1000, detail)  # fmt: skip
        except LedgerError as e:
            log.error("soft-limit webhook result not audited: %s", e)


def _reason(e: object) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__ if isinstance(e, BaseException) else str(e)
