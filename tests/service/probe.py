"""Run inside a bottle by the service tests; prints one JSON line.

``tcp HOST PORT``: can a TCP connection be opened (``{"connected": bool, "error": str}``)?
``nocap PROXY CA N``: N concurrent OpenAI SDK chat calls that carry no ``max_tokens`` (the official
SDK lets a caller leave it out), streamed; ``{"ok": n, "denied": n, "error": n, "output_tokens": n}``.
``big PROXY CA CHARS``: one Anthropic SDK call with a prompt of CHARS characters;
``{"status": int, "error": the error body or null, "input_tokens": n}``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from typing import Any


def tcp(host: str, port: int) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return {"connected": True, "error": ""}
    except OSError as e:
        return {"connected": False, "error": f"{type(e).__name__}: {e}"}


def nocap(proxy: str, ca: str, workers: int, calls: int) -> dict[str, Any]:
    import httpx2
    import openai

    counts = {"ok": 0, "denied": 0, "error": 0, "output_tokens": 0}
    lock = threading.Lock()

    def loop() -> None:
        client = openai.OpenAI(api_key="sk-probe-not-a-real-key", max_retries=0,
                               http_client=httpx2.Client(proxy=proxy, verify=ca, timeout=3.0))  # fmt: skip
        for _ in range(calls):
            try:
                chunks = client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "Explain budgets. " * 20}],
                    stream=True, stream_options={"include_usage": True},
                )  # fmt: skip
                usage = [c.usage for c in chunks if c.usage is not None]
                with lock:
                    counts["ok"] += 1
                    counts["output_tokens"] += usage[-1].completion_tokens if usage else 0
            except Exception as e:  # the SDK's error classes; what matters is the kind
                with lock:
                    counts["denied" if getattr(e, "status_code", None) == 429 else "error"] += 1

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def big(proxy: str, ca: str, chars: int) -> dict[str, Any]:
    import anthropic
    import httpx2

    client = anthropic.Anthropic(api_key="sk-ant-probe-not-a-real-key", max_retries=0,
                                 http_client=httpx2.Client(proxy=proxy, verify=ca, timeout=10.0))  # fmt: skip
    prompt = ("Summarise this log line by line. " * (chars // 33 + 1))[:chars]
    try:
        message = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": prompt}]
        )
    except anthropic.APIStatusError as e:
        return {"status": e.status_code, "error": e.response.json(), "input_tokens": 0}
    return {"status": 200, "error": None, "input_tokens": message.usage.input_tokens}


def main(argv: list[str]) -> int:
    if argv[:1] == ["tcp"] and len(argv) == 3:
        result = tcp(argv[1], int(argv[2]))
    elif argv[:1] == ["nocap"] and len(argv) == 5:
        result = nocap(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif argv[:1] == ["big"] and len(argv) == 4:
        result = big(argv[1], argv[2], int(argv[3]))
    else:
        print(
            "usage: probe.py tcp HOST PORT | nocap PROXY CA WORKERS CALLS | big PROXY CA CHARS",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
