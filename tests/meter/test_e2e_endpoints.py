"""End to end for the endpoints beyond chat: `bbnet meter run` in a subprocess, official SDKs
where they exist (openai: embeddings, compaction, Azure; anthropic: Claude on Vertex, token
counting) and raw HTTP otherwise, over TLS to the simulator. Each test is its own bottle; every
billed call ends as one usage row with the simulator's numbers, every free one as none."""

from __future__ import annotations

import gzip
import itertools
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import brotli
import openai
import pytest
from backports import zstd

from bbnet.ledger import Ledger
from bbnet.model import Bottle
from bbnet.providers import classify
from meter import gate
from meter.addon import DEGRADED_HEADER
from meter.sim import SimHandle
from meter.sim_route import AZURE_DEPLOYED_MODEL
from tests.meter.e2e import (
    MeterProxy,
    bottle_maker,
    http_client,
    launch_proxy,
    running_proxies,
    source,
    wait_for,
)

KEY = "sk-e2e" + secrets.token_hex(16)
TOKEN = "ya29.e2e" + secrets.token_hex(16)
PROMPT = "Say something about budgets."
AZURE = "https://bbnet-e2e.openai.azure.com"
VERTEX_PROJECT = "bbnet-e2e"
CODEX_URL = "https://chatgpt.com/backend-api/codex/responses"
_addresses = itertools.count(110)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with Ledger.open(tmp_path_factory.mktemp("endpoints-e2e") / "ledger.db") as opened:
        yield opened


@pytest.fixture(scope="module")
def meter(ledger: Ledger, sim: SimHandle) -> Iterator[MeterProxy]:
    proxy = launch_proxy(ledger.path.parent / "meter", ledger.path, [f"*={sim.url}"])
    with running_proxies(proxy):
        yield proxy


@pytest.fixture
def bottle(ledger: Ledger) -> Callable[..., Bottle]:
    return bottle_maker(ledger, "ep", _addresses)


def sim_delta(sim: SimHandle, call: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    before = sim.stats()
    result = call()
    after = sim.stats()
    return result, {k: after[k] - before[k] for k in ("total", "input_tokens", "output_tokens")}


def one_row(ledger: Ledger, b: Bottle) -> dict[str, Any]:
    rows = wait_for(lambda: ledger.usage(bottle=b.name))
    assert len(rows) == 1, rows
    assert [r for r in ledger.reservations() if r["bottle"] == b.name] == []
    return dict(rows[0])


def assert_row(
    row: dict[str, Any], seen: dict[str, int], provider: str, family: str, *, stream: bool
) -> None:
    assert seen["total"] == 1
    assert (row["input_tokens"], row["output_tokens"]) == (seen["input_tokens"], seen["output_tokens"])
    assert (row["provider"], row["family"], row["stream"], row["estimated"], row["status"]) == (
        provider, family, int(stream), 0, 200,
    )  # fmt: skip


def gpt(proxy: MeterProxy, b: Bottle, base_url: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=KEY, base_url=base_url, http_client=http_client(proxy, source(b)), max_retries=0
    )


def azure(proxy: MeterProxy, b: Bottle) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        api_key=KEY, azure_endpoint=AZURE, api_version="2024-10-21",
        http_client=http_client(proxy, source(b)), max_retries=0,
    )  # fmt: skip


def claude_vertex(proxy: MeterProxy, b: Bottle) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region="us-east5", project_id=VERTEX_PROJECT, access_token=TOKEN,
        http_client=http_client(proxy, source(b)), max_retries=0,
    )  # fmt: skip


# -- OpenAI: embeddings and compaction (openai SDK) ------------------------------------------------


def test_openai_embeddings(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    with gpt(meter, b) as client:
        result, seen = sim_delta(
            sim, lambda: client.embeddings.create(model="text-embedding-3-small", input=[PROMPT, "x"])
        )
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0  # the SDK decoded base64 vectors
    row = one_row(ledger, b)
    assert_row(row, seen, "openai", "openai-embeddings", stream=False)
    assert result.usage.prompt_tokens == row["input_tokens"] and row["output_tokens"] == 0
    assert row["model"] == "text-embedding-3-small" and row["cost_usd"] > 0


def test_openai_embeddings_need_room_for_input_only(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    """No output is reserved: a pool with room for the input estimate alone admits the call."""
    body: dict[str, Any] = {"model": "text-embedding-3-small", "input": PROMPT}
    match = classify("api.openai.com", "/v1/embeddings")
    assert match is not None
    estimate = gate.plan(match, "/v1/embeddings", json.dumps(body).encode()).input_tokens
    b = bottle(budget=estimate, provider="openai")
    with gpt(meter, b) as client:
        _, seen = sim_delta(sim, lambda: client.embeddings.create(**body))
    assert_row(one_row(ledger, b), seen, "openai", "openai-embeddings", stream=False)


def test_openai_responses_compact(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    with gpt(meter, b) as client:
        compacted, seen = sim_delta(sim, lambda: client.responses.compact(model="gpt-5", input=PROMPT))
    row = one_row(ledger, b)
    assert_row(row, seen, "openai", "openai-responses", stream=False)
    assert compacted.usage.input_tokens == row["input_tokens"]
    assert (row["path"], row["model"]) == ("/v1/responses/compact", "gpt-5")


# -- Azure OpenAI (openai.AzureOpenAI, and the v1 path with openai.OpenAI) -------------------------


def test_azure_deployment_chat_names_the_deployed_model(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    messages: Any = [{"role": "user", "content": PROMPT}]
    with azure(meter, b) as client:
        completion, seen = sim_delta(
            sim, lambda: client.chat.completions.create(model="prod-chat", messages=messages)
        )
    row = one_row(ledger, b)
    assert_row(row, seen, "azure", "openai-chat", stream=False)
    assert (row["host"], row["path"]) == (
        "bbnet-e2e.openai.azure.com",
        "/openai/deployments/prod-chat/chat/completions",
    )
    assert row["model"] == completion.model == AZURE_DEPLOYED_MODEL  # the answer's model, not "prod-chat"
    assert row["cost_usd"] > 0  # priced as genai-prices prices Azure


def test_azure_deployment_stream_and_embeddings(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    messages: Any = [{"role": "user", "content": PROMPT}]
    with azure(meter, b) as client:

        def stream() -> list[Any]:
            return list(client.chat.completions.create(model="prod-chat", messages=messages, stream=True))

        chunks, seen = sim_delta(sim, stream)
    assert all(chunk.usage is None for chunk in chunks)  # the injected usage chunk was taken out
    row = one_row(ledger, b)
    assert_row(row, seen, "azure", "openai-chat", stream=True)
    assert row["model"] == AZURE_DEPLOYED_MODEL
    e = bottle()
    with azure(meter, e) as client:
        result, seen = sim_delta(sim, lambda: client.embeddings.create(model="prod-embed", input=PROMPT))
    row = one_row(ledger, e)
    assert_row(row, seen, "azure", "openai-embeddings", stream=False)
    assert row["model"] == result.model == AZURE_DEPLOYED_MODEL


def test_azure_v1_responses(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    with gpt(meter, b, base_url=f"{AZURE}/openai/v1/") as client:
        response, seen = sim_delta(
            sim, lambda: client.responses.create(model="prod-mini", input=PROMPT, max_output_tokens=9)
        )
    row = one_row(ledger, b)
    assert_row(row, seen, "azure", "openai-responses", stream=False)
    assert row["path"] == "/openai/v1/responses" and response.usage is not None
    assert row["output_tokens"] == response.usage.output_tokens == 9


# -- Vertex AI: Claude (anthropic.AnthropicVertex) and Gemini (raw) ---------------------------------


def test_claude_on_vertex(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    model = "claude-sonnet-4-5@20250929"
    messages: Any = [{"role": "user", "content": PROMPT}]
    b = bottle()
    with claude_vertex(meter, b) as client:
        message, seen = sim_delta(
            sim, lambda: client.messages.create(model=model, max_tokens=20, messages=messages)
        )
    row = one_row(ledger, b)
    assert_row(row, seen, "anthropic", "anthropic-messages", stream=False)
    assert row["host"] == "us-east5-aiplatform.googleapis.com"
    assert (
        row["path"]
        == f"/v1/projects/{VERTEX_PROJECT}/locations/us-east5/publishers/anthropic/models/{model}:rawPredict"
    )
    assert row["model"] == message.model == model and row["cost_usd"] > 0
    s = bottle()
    with claude_vertex(meter, s) as client:

        def stream() -> Any:
            with client.messages.stream(model=model, max_tokens=20, messages=messages) as events:
                return events.get_final_message()

        final, seen = sim_delta(sim, stream)
    row = one_row(ledger, s)
    assert_row(row, seen, "anthropic", "anthropic-messages", stream=True)
    assert row["path"].endswith(":streamRawPredict") and final.usage.output_tokens == row["output_tokens"]


GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
    "generationConfig": {"maxOutputTokens": 7},
}


@pytest.mark.parametrize("query", ["?alt=sse", ""])
def test_gemini_on_vertex(
    query: str, meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    url = (f"https://us-central1-aiplatform.googleapis.com/v1/projects/{VERTEX_PROJECT}/locations/us-central1"
           f"/publishers/google/models/gemini-2.5-flash:streamGenerateContent{query}")  # fmt: skip
    b = bottle()
    with http_client(meter, source(b)) as client:
        answer, seen = sim_delta(
            sim, lambda: client.post(url, json=GEMINI_BODY, headers={"authorization": f"Bearer {TOKEN}"})
        )
    assert answer.status_code == 200, answer.text
    row = one_row(ledger, b)
    assert_row(row, seen, "google", "gemini", stream=True)
    assert row["output_tokens"] == 7 and row["model"] == "gemini-2.5-flash" and row["cost_usd"] > 0


# -- Gemini Code Assist and Codex on ChatGPT: subscriptions under their own keys ------------------


@pytest.mark.parametrize("method", ["streamGenerateContent?alt=sse", "generateContent"])
def test_code_assist(
    method: str, meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    body = {"model": "gemini-2.5-pro", "project": "bbnet-e2e-42", "request": GEMINI_BODY}
    b = bottle()
    with http_client(meter, source(b)) as client:
        url = f"https://cloudcode-pa.googleapis.com/v1internal:{method}"
        answer, seen = sim_delta(
            sim, lambda: client.post(url, json=body, headers={"authorization": f"Bearer {TOKEN}"})
        )
    assert answer.status_code == 200, answer.text
    row = one_row(ledger, b)
    assert_row(row, seen, "code-assist", "gemini-code-assist", stream=method.startswith("stream"))
    assert row["model"] == "gemini-2.5-pro" and row["cost_usd"] > 0  # Gemini's list price


CODEX_BODY = {
    "model": "gpt-5-codex", "instructions": "You are Codex.", "stream": True, "store": False,
    "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
}  # fmt: skip


def codex_post(proxy: MeterProxy, b: Bottle, body: bytes) -> Any:
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "content-type": "application/json",
        "content-encoding": "zstd",
    }
    with http_client(proxy, source(b)) as client:
        return client.post(CODEX_URL, content=body, headers=headers)


def test_codex_chatgpt_backend_zstd_body(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    answer, seen = sim_delta(
        sim, lambda: codex_post(meter, b, zstd.compress(json.dumps(CODEX_BODY).encode()))
    )
    assert answer.status_code == 200, answer.text
    row = one_row(ledger, b)
    assert_row(row, seen, "chatgpt", "openai-responses", stream=True)
    assert row["model"] == "gpt-5-codex" and row["cost_usd"] > 0  # OpenAI's list price


def test_codex_is_admitted_whole_or_denied(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    """The ChatGPT backend refuses max_output_tokens, so the gate cannot DEGRADE a Codex call: a
    pool without room for its whole output cap answers 429 and the backend never sees it."""
    b = bottle(budget=50_000, provider="chatgpt")  # well above the input, below gpt-5's 128k cap
    answer, seen = sim_delta(
        sim, lambda: codex_post(meter, b, zstd.compress(json.dumps(CODEX_BODY).encode()))
    )
    assert answer.status_code == 429 and seen["total"] == 0
    assert answer.json()["bbnet_code"] == "BUDGET_DENIED" and DEGRADED_HEADER not in answer.headers
    assert (
        ledger.usage(bottle=b.name) == []
        and [r for r in ledger.reservations() if r["bottle"] == b.name] == []
    )


CODINGS = {"zstd": zstd.compress, "br, gzip": lambda data: gzip.compress(brotli.compress(data))}


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_degrade_reencodes_a_compressed_body(
    coding: str, meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    """The gate lowers the cap in the decoded body and forwards it in the client's coding again
    (a chain of codings goes decoded, its header dropped): the simulator (which decodes, as the
    providers do) honours the lowered cap."""
    allowed = 5
    body = {"model": "gpt-5", "input": PROMPT, "max_output_tokens": 300, "stream": True}
    match = classify("api.openai.com", "/v1/responses")
    assert match is not None
    estimate = gate.plan(match, "/v1/responses", json.dumps(body).encode()).input_tokens
    b = bottle(budget=estimate + allowed, provider="openai")
    headers = {
        "authorization": f"Bearer {KEY}",
        "content-type": "application/json",
        "content-encoding": "zstd",
    }
    with http_client(meter, source(b)) as client:
        compressed = zstd.compress(json.dumps(body).encode())
        url = "https://api.openai.com/v1/responses"
        answer, seen = sim_delta(sim, lambda: client.post(url, content=compressed, headers=headers))
    assert answer.status_code == 200, answer.text
    assert answer.headers[DEGRADED_HEADER] == f"max_output_tokens={allowed}"
    row = one_row(ledger, b)
    assert_row(row, seen, "openai", "openai-responses", stream=True)
    assert row["output_tokens"] == allowed


def test_a_body_that_does_not_decode_is_refused(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle()
    broken = zstd.compress(json.dumps(CODEX_BODY).encode())[:-7]
    answer, seen = sim_delta(sim, lambda: codex_post(meter, b, broken))
    assert answer.status_code == 400 and seen["total"] == 0
    doc = answer.json()
    assert doc["bbnet_code"] == "BAD_CONTENT_ENCODING" and doc["error"]["type"] == "invalid_request_error"
    assert "zstd" in doc["error"]["message"]
    assert (
        ledger.usage(bottle=b.name) == []
        and [r for r in ledger.reservations() if r["bottle"] == b.name] == []
    )


# -- embeddings on Gemini and Bedrock (raw) --------------------------------------------------------


def test_gemini_embed_commits_the_flagged_estimate(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    url = "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:embedContent"
    body = {"content": {"parts": [{"text": PROMPT}]}}
    b = bottle()
    with http_client(meter, source(b)) as client:
        answer, seen = sim_delta(sim, lambda: client.post(url, json=body, headers={"x-goog-api-key": KEY}))
    assert answer.status_code == 200 and "usageMetadata" not in answer.json()
    row = one_row(ledger, b)
    match = classify("generativelanguage.googleapis.com", "/v1beta/models/gemini-embedding-001:embedContent")
    assert match is not None
    assert seen["total"] == 1 and row["estimated"] == 1 and row["output_tokens"] == 0
    assert row["input_tokens"] == gate.plan(match, url, json.dumps(body).encode()).input_tokens
    assert (row["provider"], row["family"], row["model"]) == (
        "google",
        "gemini-embed",
        "gemini-embedding-001",
    )


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("amazon.titan-embed-text-v2:0", {"inputText": PROMPT}),
        ("cohere.embed-english-v3", {"texts": [PROMPT, "x"], "input_type": "search_document"}),
    ],
)
def test_bedrock_embeddings(
    model: str,
    body: dict[str, Any],
    meter: MeterProxy,
    sim: SimHandle,
    ledger: Ledger,
    bottle: Callable[..., Bottle],
) -> None:
    url = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{model}/invoke"
    b = bottle()
    with http_client(meter, source(b)) as client:
        answer, seen = sim_delta(
            sim,
            lambda: client.post(url, json=body, headers={"authorization": "AWS4-HMAC-SHA256 Signature=e2e"}),
        )
    assert answer.status_code == 200, answer.text
    row = one_row(ledger, b)
    assert_row(row, seen, "bedrock", "bedrock-embed", stream=False)
    assert row["model"] == model


# -- free endpoints: answered, never metered --------------------------------------------------------


def test_free_endpoints_leave_no_row_and_no_hold(
    meter: MeterProxy, sim: SimHandle, ledger: Ledger, bottle: Callable[..., Bottle]
) -> None:
    b = bottle(budget=1)  # a pool with no room: a metered call would be denied
    calls: list[Callable[[], object]] = []
    messages: Any = [{"role": "user", "content": PROMPT}]
    with (
        anthropic.Anthropic(api_key=KEY, http_client=http_client(meter, source(b)), max_retries=0) as claude,
        gpt(meter, b) as client,
        http_client(meter, source(b)) as raw,
    ):
        calls += [
            lambda: claude.messages.count_tokens(model="claude-sonnet-4-5", messages=messages).input_tokens,
            lambda: claude.models.list().data,
            lambda: client.responses.input_tokens.count(model="gpt-5", input=PROMPT).input_tokens,
            lambda: client.models.list().data,
            lambda: raw.post(
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:countTokens",
                json=GEMINI_BODY,
            ).json()["totalTokens"],
            lambda: raw.get("https://generativelanguage.googleapis.com/v1beta/models").json()["models"],
        ]
        for call in calls:
            result, seen = sim_delta(sim, call)
            assert result and seen["total"] == 1
    assert ledger.usage(bottle=b.name) == []
    assert [r for r in ledger.reservations() if r["bottle"] == b.name] == []
