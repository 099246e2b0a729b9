"""End to end, for real: `bbnet meter run` in a subprocess, the official anthropic and openai SDKs
(and raw HTTP for Gemini and Bedrock) going through it over TLS and trusting its CA, the simulator
upstream. Each test is its own bottle: its own loopback source address, budgets and usage rows.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from bbnet.ledger import Ledger
from bbnet.model import Bottle, Budget
from bbnet.names import Scope
from bbnet.pools import period_end, period_start
from bbnet.providers import classify
from meter import gate
from meter.addon import DEGRADED_HEADER
from meter.sim import SimHandle
from tests.meter.e2e import (
    MeterProxy,
    bottle_maker,
    http_client,
    launch_proxy,
    running_proxies,
    source,
    wait_for,
)

ANTHROPIC_KEY = "sk-ant-api03-e2e" + secrets.token_hex(16)
OPENAI_KEY = "sk-proj-e2e" + secrets.token_hex(16)
GOOGLE_KEY = "AIzaE2e" + secrets.token_hex(16)
AWS_SIGNATURE = secrets.token_hex(32)
PROMPT = "Say something about budgets."
DENY_LIMIT = 5  # tokens: below the input estimate of any call here, so not even one output token fits
UNKNOWN_SOURCE = "127.0.0.2"
SLOW_HOST = "api.groq.com"  # an OpenAI-compatible host; the proxy sends it to the slow simulator
_addresses = itertools.count(10)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("meter-e2e")


@pytest.fixture(scope="module")
def ledger(workdir: Path) -> Iterator[Ledger]:
    with Ledger.open(workdir / "ledger.db") as opened:
        yield opened


@pytest.fixture(scope="module")
def meter(workdir: Path, ledger: Ledger, sim: SimHandle, slow_sim: SimHandle) -> Iterator[MeterProxy]:
    proxy = launch_proxy(workdir / "meter", ledger.path, [f"{SLOW_HOST}={slow_sim.url}", f"*={sim.url}"])
    with running_proxies(proxy):
        yield proxy


@pytest.fixture(scope="module")
def broken_ledger_meters(workdir: Path, sim: SimHandle) -> Iterator[tuple[MeterProxy, MeterProxy]]:
    """Two proxies whose --db is a directory: fail-closed, and fail-open (BBNET_FAIL_OPEN=1)."""
    not_a_file = workdir / "a-directory"
    not_a_file.mkdir()
    closed = launch_proxy(workdir / "closed", not_a_file, [f"*={sim.url}"])
    fail_open = launch_proxy(workdir / "open", not_a_file, [f"*={sim.url}"], {"BBNET_FAIL_OPEN": "1"})
    with running_proxies(closed, fail_open):
        yield closed, fail_open


NewBottle = Callable[..., Bottle]


@pytest.fixture
def new_bottle(ledger: Ledger) -> NewBottle:
    """Register a bottle on a fresh loopback address, optionally with a token budget."""
    return bottle_maker(ledger, "e2e", _addresses)


def claude(proxy: MeterProxy, address: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=ANTHROPIC_KEY, http_client=http_client(proxy, address), max_retries=0)


def gpt(proxy: MeterProxy, address: str, base_url: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=OPENAI_KEY, base_url=base_url, http_client=http_client(proxy, address), max_retries=0
    )


def one_usage_row(ledger: Ledger, bottle: Bottle) -> dict[str, Any]:
    """The bottle's single usage row (streams commit at stream end: allow it a moment)."""
    rows = wait_for(lambda: ledger.usage(bottle=bottle.name))
    assert len(rows) == 1, rows
    return dict(rows[0])


def holds(ledger: Ledger, bottle: Bottle) -> list[dict[str, object]]:
    return [r for r in ledger.reservations() if r["bottle"] == bottle.name]


def assert_tokens(row: dict[str, Any], input_tokens: int, output_tokens: int, *, stream: bool) -> None:
    assert (row["input_tokens"], row["output_tokens"]) == (input_tokens, output_tokens)
    assert row["estimated"] == 0
    assert row["stream"] == int(stream)
    assert row["status"] == 200


def sim_delta(sim: SimHandle, call: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """``call()``'s result and the requests and tokens the simulator saw during it."""
    before = sim.stats()
    result = call()
    after = sim.stats()
    return result, {k: after[k] - before[k] for k in ("total", "input_tokens", "output_tokens")}


# -- (1) usage rows with the numbers the SDK reports ------------------------------------------------


def test_anthropic_json(meter: MeterProxy, ledger: Ledger, new_bottle: NewBottle) -> None:
    bottle = new_bottle()
    with claude(meter, source(bottle)) as client:
        message = client.messages.create(
            model="claude-sim", max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
        )
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, message.usage.input_tokens, message.usage.output_tokens, stream=False)
    assert (row["provider"], row["family"], row["model"]) == ("anthropic", "anthropic-messages", "claude-sim")
    assert (row["host"], row["path"]) == ("api.anthropic.com", "/v1/messages")
    assert holds(ledger, bottle) == []


def test_anthropic_stream(meter: MeterProxy, ledger: Ledger, new_bottle: NewBottle) -> None:
    bottle = new_bottle()
    with (
        claude(meter, source(bottle)) as client,
        client.messages.stream(
            model="claude-sim", max_tokens=50, messages=[{"role": "user", "content": PROMPT}]
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, final.usage.input_tokens, final.usage.output_tokens, stream=True)
    assert holds(ledger, bottle) == []


def test_openai_chat_json(meter: MeterProxy, ledger: Ledger, new_bottle: NewBottle) -> None:
    bottle = new_bottle()
    with gpt(meter, source(bottle)) as client:
        completion = client.chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": PROMPT}], max_completion_tokens=40
        )
    assert completion.usage is not None
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, completion.usage.prompt_tokens, completion.usage.completion_tokens, stream=False)
    assert (row["provider"], row["family"]) == ("openai", "openai-chat")


def normalised_events(lines: list[str]) -> list[object]:
    """SSE lines with each chunk's per-call values (id, timestamp, fingerprint) taken out; the
    member order is kept, so a chunk that gained or lost a member (``"usage": null``) differs."""
    out: list[object] = []
    for line in lines:
        data = line.removeprefix("data: ")
        if data == line or data == "[DONE]":
            out.append(line)
            continue
        chunk = {
            k: v for k, v in json.loads(data).items() if k not in ("id", "created", "system_fingerprint")
        }
        out.append((list(chunk), chunk))
    return out


def chat_stream_lines(client: openai.OpenAI) -> list[str]:
    """The raw SSE lines of a chat stream whose request does not ask for usage."""
    with client.chat.completions.with_streaming_response.create(
        model="gpt-sim", messages=[{"role": "user", "content": PROMPT}], stream=True
    ) as response:
        return list(response.iter_lines())


def test_openai_chat_stream_unchanged_for_client(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, new_bottle: NewBottle
) -> None:
    """The client did not ask for include_usage: it sees exactly what it sees without bbnet,
    while the meter (which asked for usage on its behalf) records the real numbers."""
    bottle = new_bottle()
    with openai.OpenAI(api_key=OPENAI_KEY, base_url=sim.url + "/v1", max_retries=0) as direct:
        expected = chat_stream_lines(direct)
    with gpt(meter, source(bottle)) as client:
        lines, seen = sim_delta(sim, lambda: chat_stream_lines(client))
    assert normalised_events(lines) == normalised_events(expected)
    assert not any('"usage"' in line for line in lines)
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, seen["input_tokens"], seen["output_tokens"], stream=True)
    assert row["output_tokens"] > 0


def test_openai_responses_stream(meter: MeterProxy, ledger: Ledger, new_bottle: NewBottle) -> None:
    bottle = new_bottle()
    with (
        gpt(meter, source(bottle)) as client,
        client.responses.stream(model="gpt-sim", input=PROMPT) as stream,
    ):
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas
    assert final.usage is not None
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, final.usage.input_tokens, final.usage.output_tokens, stream=True)
    assert row["reasoning_tokens"] == final.usage.output_tokens_details.reasoning_tokens
    assert row["family"] == "openai-responses"


# -- Gemini and Bedrock, raw HTTP -------------------------------------------------------------------

GEMINI_URL = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
BEDROCK_URL = (
    "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0"
)
BEDROCK_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAE2ETEST/20250101/us-east-1/bedrock/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date, Signature={AWS_SIGNATURE}"
)
RAW_CALLS = {
    "gemini-json": (f"{GEMINI_URL}:generateContent", {"x-goog-api-key": GOOGLE_KEY},
                    {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}, "google", False),
    "gemini-sse": (f"{GEMINI_URL}:streamGenerateContent?alt=sse", {"x-goog-api-key": GOOGLE_KEY},
                   {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}, "google", True),
    "bedrock-converse": (f"{BEDROCK_URL}/converse", {"authorization": BEDROCK_AUTH},
                         {"messages": [{"role": "user", "content": [{"text": PROMPT}]}],
                          "inferenceConfig": {"maxTokens": 40}}, "bedrock", False),
    "bedrock-converse-stream": (f"{BEDROCK_URL}/converse-stream", {"authorization": BEDROCK_AUTH},
                                {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}, "bedrock", True),
}  # fmt: skip


def provider_usage(body: dict[str, Any]) -> tuple[int, int]:
    if "usageMetadata" in body:
        meta = body["usageMetadata"]
        return meta["promptTokenCount"], meta["candidatesTokenCount"] + meta.get("thoughtsTokenCount", 0)
    return body["usage"]["inputTokens"], body["usage"]["outputTokens"]


@pytest.mark.parametrize("name", list(RAW_CALLS))
def test_gemini_and_bedrock_raw(
    name: str, meter: MeterProxy, sim: SimHandle, ledger: Ledger, new_bottle: NewBottle
) -> None:
    url, headers, body, provider, streamed = RAW_CALLS[name]
    bottle = new_bottle()
    with http_client(meter, source(bottle)) as client:
        response, seen = sim_delta(sim, lambda: client.post(url, headers=headers, json=body))
    assert response.status_code == 200, response.text
    assert seen["total"] == 1
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, seen["input_tokens"], seen["output_tokens"], stream=streamed)
    assert row["provider"] == provider
    if not streamed:
        assert provider_usage(response.json()) == (seen["input_tokens"], seen["output_tokens"])
    elif provider == "bedrock":
        assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    else:
        last = [line for line in response.text.splitlines() if line.startswith("data: ")][-1]
        assert provider_usage(json.loads(last.removeprefix("data: "))) == (
            seen["input_tokens"],
            seen["output_tokens"],
        )


# -- (2) DENY, (3) DEGRADE --------------------------------------------------------------------------


def test_deny_never_reaches_provider(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, new_bottle: NewBottle
) -> None:
    bottle = new_bottle(budget=DENY_LIMIT, provider="anthropic")
    with claude(meter, source(bottle)) as client:

        def call() -> anthropic.RateLimitError:
            with pytest.raises(anthropic.RateLimitError) as caught:
                client.messages.create(
                    model="claude-sim", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
                )
            return caught.value

        error, seen = sim_delta(sim, call)
    assert seen["total"] == 0  # the simulator counts every request it receives
    body = error.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert body["bbnet_code"] == "BUDGET_DENIED"
    assert (body["scope"], body["provider"], body["limit"], body["used"]) == (
        f"bottle:{bottle.name}", "anthropic", DENY_LIMIT, 0,
    )  # fmt: skip
    assert error.response.headers["x-bbnet-code"] == "BUDGET_DENIED"
    assert ledger.usage(bottle=bottle.name) == []
    assert holds(ledger, bottle) == []


def test_deny_openai_shape(meter: MeterProxy, sim: SimHandle, new_bottle: NewBottle) -> None:
    bottle = new_bottle(budget=DENY_LIMIT, provider="openai")
    with gpt(meter, source(bottle)) as client:

        def call() -> openai.RateLimitError:
            with pytest.raises(openai.RateLimitError) as caught:
                client.chat.completions.create(
                    model="gpt-sim", messages=[{"role": "user", "content": PROMPT}], max_completion_tokens=100
                )
            return caught.value

        error, seen = sim_delta(sim, call)
    assert seen["total"] == 0
    assert error.code == "budget_denied"  # what the SDK parsed from the OpenAI-shaped error
    body = error.response.json()
    assert (body["bbnet_code"], body["scope"]) == ("BUDGET_DENIED", f"bottle:{bottle.name}")


def _day_end(now: float) -> float:
    return period_end("day", period_start("day", now))


@pytest.mark.parametrize("period", ["day", "total"])
def test_deny_stops_sdk_retries(meter: MeterProxy, sim: SimHandle, ledger: Ledger, new_bottle: NewBottle,
                                period: str) -> None:  # fmt: skip
    """The official SDKs with their default retries (2) get the 429 once: the proxy sees one
    request per SDK call (one deny line each), the provider none. ``retry-after`` only where the
    governing pool's period resets."""
    bottle = new_bottle()
    ledger.set_budget(Budget(Scope.of_bottle(bottle.name), "*", "tokens", DENY_LIMIT, period))
    address = source(bottle)
    shared = http_client(meter, address)  # one client, one bottle
    a = anthropic.Anthropic(api_key=ANTHROPIC_KEY, http_client=shared)
    o = openai.OpenAI(api_key=OPENAI_KEY, http_client=shared)
    with a, o:
        assert a.max_retries == 2 and o.max_retries == 2  # the SDKs' defaults, untouched here
        before = time.time()

        def calls() -> tuple[anthropic.RateLimitError, openai.RateLimitError]:
            with pytest.raises(anthropic.RateLimitError) as a_err:
                a.messages.create(
                    model="claude-sim", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
                )
            with pytest.raises(openai.RateLimitError) as o_err:
                o.chat.completions.create(model="gpt-sim", messages=[{"role": "user", "content": PROMPT}])
            return a_err.value, o_err.value

        (a_error, o_error), seen = sim_delta(sim, calls)
        after = time.time()
    assert seen["total"] == 0
    assert meter.stderr().count(f"deny bottle={bottle.name} ") == 2  # one per SDK call: no retry
    for error in (a_error, o_error):
        headers = error.response.headers
        assert headers["x-should-retry"] == "false"
        if period == "total":
            assert "retry-after" not in headers
        else:
            wait = int(headers["retry-after"])
            assert _day_end(after) - after <= wait <= _day_end(before) - before + 1


DEGRADE_PROMPT = "Tell me how a budget degrades a call, in detail. " * 6
DEGRADE_MAX_TOKENS = 200
DEGRADE_ALLOWED = 6


def test_degrade_lowers_the_cap(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, new_bottle: NewBottle
) -> None:
    request: dict[str, Any] = {
        "model": "claude-sim",
        "max_tokens": DEGRADE_MAX_TOKENS,
        "messages": [{"role": "user", "content": DEGRADE_PROMPT}],
    }
    match = classify("api.anthropic.com", "/v1/messages")
    assert match is not None
    estimate = gate.plan(match, "/v1/messages", json.dumps(request).encode()).input_tokens
    limit = estimate + DEGRADE_ALLOWED
    bottle = new_bottle(budget=limit, provider="anthropic")
    with claude(meter, source(bottle)) as client:
        raw, seen = sim_delta(sim, lambda: client.messages.with_raw_response.create(**request))
    message = raw.parse()
    assert raw.headers[DEGRADED_HEADER] == f"max_output_tokens={DEGRADE_ALLOWED}"
    assert seen["total"] == 1
    assert seen["output_tokens"] == message.usage.output_tokens == DEGRADE_ALLOWED  # the sim honoured the cap
    assert message.stop_reason == "max_tokens"
    row = one_usage_row(ledger, bottle)
    assert_tokens(row, message.usage.input_tokens, DEGRADE_ALLOWED, stream=False)
    [pool] = ledger.path_pools(bottle.name, "anthropic", "anthropic")
    assert pool.used == row["input_tokens"] + row["output_tokens"] <= pool.limit == limit
    assert pool.reserved == 0


# -- (4) client disconnect --------------------------------------------------------------------------


def test_client_disconnect_leaves_no_reservation(
    meter: MeterProxy, slow_sim: SimHandle, ledger: Ledger, new_bottle: NewBottle
) -> None:
    bottle = new_bottle()
    with gpt(meter, source(bottle), base_url=f"https://{SLOW_HOST}/openai/v1") as client:
        stream = client.chat.completions.create(
            model="llama-sim", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        first = next(iter(stream))
        assert first.choices
        assert len(holds(ledger, bottle)) == 1  # mid-stream: the call holds its reservation
        stream.close()
    assert wait_for(lambda: holds(ledger, bottle) == [])
    assert slow_sim.stats()["total"] == 1
    assert len(ledger.usage(bottle=bottle.name)) <= 1


# -- (5) cutoff bottle and unknown source -----------------------------------------------------------


def test_cutoff_bottle_gets_429(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, new_bottle: NewBottle
) -> None:
    bottle = new_bottle()
    ledger.set_desired_state(bottle.name, "cutoff", "e2e test", "test")
    with claude(meter, source(bottle)) as client:

        def call() -> anthropic.RateLimitError:
            with pytest.raises(anthropic.RateLimitError) as caught:
                client.messages.create(
                    model="claude-sim", max_tokens=10, messages=[{"role": "user", "content": PROMPT}]
                )
            return caught.value

        error, seen = sim_delta(sim, call)
    assert seen["total"] == 0
    body = error.response.json()
    assert body["bbnet_code"] == "BUDGET_DENIED"
    assert f"bottle {bottle.name} is cutoff" in body["error"]["message"]
    assert error.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in error.response.headers  # waiting does not lift a cutoff
    assert ledger.usage(bottle=bottle.name) == []


def test_unknown_source_gets_403(meter: MeterProxy, sim: SimHandle) -> None:
    with claude(meter, UNKNOWN_SOURCE) as client:

        def call() -> anthropic.PermissionDeniedError:
            with pytest.raises(anthropic.PermissionDeniedError) as caught:
                client.messages.create(
                    model="claude-sim", max_tokens=10, messages=[{"role": "user", "content": PROMPT}]
                )
            return caught.value

        error, seen = sim_delta(sim, call)
    assert seen["total"] == 0
    body = error.response.json()
    assert body["bbnet_code"] == "UNKNOWN_SOURCE"
    assert UNKNOWN_SOURCE in body["error"]["message"]


# -- (6) ledger unreachable -------------------------------------------------------------------------


def test_ledger_unreachable_fails_closed(
    broken_ledger_meters: tuple[MeterProxy, MeterProxy], sim: SimHandle
) -> None:
    closed, _ = broken_ledger_meters
    with claude(closed, "127.0.0.1") as client:

        def call() -> anthropic.APIStatusError:
            with pytest.raises(anthropic.APIStatusError) as caught:
                client.messages.create(
                    model="claude-sim", max_tokens=10, messages=[{"role": "user", "content": PROMPT}]
                )
            return caught.value

        error, seen = sim_delta(sim, call)
    assert seen["total"] == 0
    assert error.status_code == 503
    assert error.response.json()["bbnet_code"] == "BUDGET_CONFIG"
    assert "not a regular file" in error.response.json()["error"]["message"]
    assert "LLM calls are answered 503 BUDGET_CONFIG" in closed.stderr()


def test_fail_open_forwards_and_says_so(
    broken_ledger_meters: tuple[MeterProxy, MeterProxy], sim: SimHandle
) -> None:
    _, fail_open = broken_ledger_meters
    with claude(fail_open, "127.0.0.1") as client:
        message, seen = sim_delta(sim, lambda: client.messages.create(
            model="claude-sim", max_tokens=10, messages=[{"role": "user", "content": PROMPT}]))  # fmt: skip
    assert seen["total"] == 1
    assert message.usage.output_tokens == 10
    log = fail_open.stderr()
    assert "BBNET_FAIL_OPEN=1: calls are forwarded unmetered" in log
    assert "LLM calls are forwarded unmetered" in log
    assert wait_for(lambda: "forwarding anthropic/v1/messages unmetered" in fail_open.stderr())


# -- (7) no credentials in the logs -----------------------------------------------------------------


def test_logs_never_hold_credentials(
    meter: MeterProxy,
    broken_ledger_meters: tuple[MeterProxy, MeterProxy],
    ledger: Ledger,
    new_bottle: NewBottle,
) -> None:
    """Calls with the key in the URL (``?key=``: the fail-open line logs the path) and in headers,
    metered, denied and forwarded unmetered; no key used in this module may reach any proxy's log."""
    _, fail_open = broken_ledger_meters
    gemini = {"contents": [{"parts": [{"text": PROMPT}]}]}
    url = f"{GEMINI_URL}:generateContent?key={GOOGLE_KEY}"
    with http_client(fail_open, "127.0.0.1") as client:
        assert client.post(url, json=gemini).status_code == 200
    assert wait_for(lambda: "forwarding google/v1beta/models/gemini-2.5-flash" in fail_open.stderr())
    metered, denied = new_bottle(), new_bottle(budget=DENY_LIMIT, provider="google")
    with http_client(meter, source(metered)) as client:
        assert client.post(url, json=gemini, headers={"x-goog-api-key": GOOGLE_KEY}).status_code == 200
    with http_client(meter, source(denied)) as client:
        refused = client.post(url, json=gemini)
    assert refused.status_code == 429
    one_usage_row(ledger, metered)
    logs = meter.stderr() + "".join(p.stderr() for p in broken_ledger_meters)
    assert f"commit bottle={metered.name}" in logs and f"deny bottle={denied.name}" in logs
    for secret in (ANTHROPIC_KEY, OPENAI_KEY, GOOGLE_KEY, AWS_SIGNATURE):
        assert secret not in logs
    assert GOOGLE_KEY not in refused.text
