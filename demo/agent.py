"""A stand-in coding agent: calls an LLM in a loop with an official SDK, through the bottle's proxy.

Run inside a bottle (``bbnet bottle exec NAME -- python -m demo.agent ...``). It never stops on its
own accord before ``--calls``; bbnet has to stop it. One JSON line per call on stdout:
``{"i", "sdk", "stream", "outcome": ok|denied|error, "input_tokens", "output_tokens", "error"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Any

import httpx2

PROMPT = "Refactor the parser module and explain each change. " * 8


def _client(sdk: str, proxy: str, ca: str, timeout: float, read_timeout: float) -> Any:
    # connecting is what a cut-off bottle cannot do (its SYNs are dropped): that fails fast; an
    # answer on a busy machine may be slow, and a cut ends a call in flight at once (ss --kill)
    http = httpx2.Client(proxy=proxy, verify=ca, timeout=httpx2.Timeout(read_timeout, connect=timeout))
    if sdk == "anthropic":
        import anthropic

        return anthropic.Anthropic(api_key="sk-ant-demo-not-a-real-key", http_client=http, max_retries=0)
    import openai

    return openai.OpenAI(api_key="sk-demo-not-a-real-key", http_client=http, max_retries=0)


def _call(client: Any, sdk: str, model: str, stream: bool, max_tokens: int) -> tuple[int, int]:
    messages = [{"role": "user", "content": PROMPT}]
    if sdk == "anthropic":
        if stream:
            with client.messages.stream(model=model, max_tokens=max_tokens, messages=messages) as s:
                for _ in s.text_stream:
                    pass
                usage = s.get_final_message().usage
        else:
            usage = client.messages.create(model=model, max_tokens=max_tokens, messages=messages).usage
        return usage.input_tokens, usage.output_tokens
    if stream:
        chunks = client.chat.completions.create(
            model=model, max_tokens=max_tokens, messages=messages, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        final = [c.usage for c in chunks if c.usage is not None]
        return (final[-1].prompt_tokens, final[-1].completion_tokens) if final else (0, 0)
    usage = client.chat.completions.create(model=model, max_tokens=max_tokens, messages=messages).usage
    return usage.prompt_tokens, usage.completion_tokens


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sdk", choices=("anthropic", "openai"), required=True)
    ap.add_argument("--proxy", required=True, help="http://HOST:PORT of the bottle's meter")
    ap.add_argument("--ca", required=True, help="the meter's CA certificate (PEM)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--stream-every", type=int, default=2, help="every Nth call streams (0: never)")
    ap.add_argument("--interval", type=float, default=0.0, help="seconds between calls")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds to connect to the proxy")
    ap.add_argument(
        "--read-timeout", type=float, default=10.0, help="seconds to wait for the next bytes of an answer"
    )
    ap.add_argument("--give-up-after", type=int, default=3, help="stop after N connection failures in a row")
    ap.add_argument("--stop-file", default=None, help="stop before the next call once this file exists")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # SDK deprecation notices for model names are noise here
    model = args.model or ("claude-sonnet-4-5-20250929" if args.sdk == "anthropic" else "gpt-4o")
    client = _client(args.sdk, args.proxy, args.ca, args.timeout, args.read_timeout)
    failures = 0
    for i in range(args.calls):
        if args.stop_file and os.path.exists(args.stop_file):
            break
        stream = args.stream_every > 0 and i % args.stream_every == args.stream_every - 1
        line: dict[str, Any] = {"i": i, "sdk": args.sdk, "stream": stream}
        try:
            line["input_tokens"], line["output_tokens"] = _call(
                client, args.sdk, model, stream, args.max_tokens
            )
            line["outcome"] = "ok"
            failures = 0
        except Exception as e:  # the SDKs' error classes differ; what matters is the kind
            status = getattr(e, "status_code", None)
            line["outcome"] = "denied" if status == 429 else "error"
            line["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            failures = failures + 1 if status is None else 0
        print(json.dumps(line), flush=True)
        if failures >= args.give_up_after:
            break
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
