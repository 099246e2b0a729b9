"""``--replay``: the simulator answers SDK calls with the real recorded responses of the HAR."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import urlopen

import anthropic
import openai
import pytest

from meter.sim import SimHandle, start_sim
from meter.sim_replay import ReplayError
from tests.meter.recordings import HAR

RECORDINGS = HAR
TRUTH = RECORDINGS.with_name("truth.jsonl")


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(RECORDINGS.read_text())["log"]["entries"]
    return entries


@pytest.fixture(scope="module")
def truth() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TRUTH.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with start_sim(replay=RECORDINGS) as handle:
        yield handle


def index_of(entries: list[dict[str, Any]], path: str, *, stream: bool) -> int:
    """An entry for ``path`` that is not the first one recorded there, so answering it proves the
    body was matched (in-order fallback would have answered with the first)."""
    on_path = [i for i, e in enumerate(entries) if urlsplit(e["request"]["url"]).path == path]
    for i in on_path[1:]:
        body = json.loads(entries[i]["request"]["postData"]["text"])
        if body.get("stream", False) is stream:
            return i
    raise AssertionError(f"the HAR has no {'streamed' if stream else 'JSON'} exchange on {path}")


def request_body(entry: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(entry["request"]["postData"]["text"])
    return body


def recorded_json(entry: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(entry["response"]["content"]["text"])
    return body


def test_health_reports_replay_mode(sim: SimHandle, entries: list[dict[str, Any]]) -> None:
    with urlopen(sim.url + "/_sim/health") as response:  # noqa: S310 - a local http URL
        assert json.load(response) == {"status": "ok", "mode": "replay", "recorded": len(entries)}


@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
def test_anthropic_sdk_gets_the_recorded_message(
    sim: SimHandle, entries: list[dict[str, Any]], truth: list[dict[str, Any]]
) -> None:
    i = index_of(entries, "/v1/messages", stream=False)
    body = request_body(entries[i])
    model, max_tokens, messages = body.pop("model"), body.pop("max_tokens"), body.pop("messages")
    with anthropic.Anthropic(base_url=sim.url, api_key="k", max_retries=0) as client:
        message = client.messages.create(
            model=model, max_tokens=max_tokens, messages=messages, extra_body=body
        )
    recorded = recorded_json(entries[i])
    assert message.id == recorded["id"]
    assert message.model_dump(mode="json", exclude_none=True)["content"] == recorded["content"]
    usage = message.usage
    all_input = (
        usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    )
    assert (all_input, usage.output_tokens) == (truth[i]["input_tokens"], truth[i]["output_tokens"])


def test_openai_chat_stream_is_replayed_with_its_usage_chunk(
    sim: SimHandle, entries: list[dict[str, Any]], truth: list[dict[str, Any]]
) -> None:
    i = index_of(entries, "/v1/chat/completions", stream=True)
    body = request_body(entries[i])
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model=body["model"],
                messages=body["messages"],
                stream=True,
                stream_options=body["stream_options"],
            )
        )
    final = chunks[-1]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (
        truth[i]["input_tokens"],
        truth[i]["output_tokens"],
    )
    assert final.model == truth[i]["model"]


def test_openai_responses_stream_is_sent_event_by_event(
    entries: list[dict[str, Any]], truth: list[dict[str, Any]]
) -> None:
    i = index_of(entries, "/v1/responses", stream=True)
    body = request_body(entries[i])
    events_recorded = entries[i]["response"]["content"]["text"].count("\n\n")
    delay = 0.02
    with (
        start_sim(replay=RECORDINGS, chunk_delay_ms=int(delay * 1000)) as sim,
        openai.OpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=0) as client,
    ):
        started = time.monotonic()
        events = list(
            client.responses.create(stream=True, **{k: v for k, v in body.items() if k != "stream"})
        )
        elapsed = time.monotonic() - started
    assert len(events) == events_recorded
    completed = [e for e in events if e.type == "response.completed"]
    assert completed and completed[0].response.usage is not None
    assert completed[0].response.usage.input_tokens == truth[i]["input_tokens"]
    assert completed[0].response.usage.output_tokens == truth[i]["output_tokens"]
    assert elapsed >= (events_recorded - 1) * delay


def test_unrecorded_path_is_404_in_the_provider_shape(sim: SimHandle) -> None:
    with (
        openai.OpenAI(base_url=sim.url + "/v1", api_key="k", max_retries=0) as client,
        pytest.raises(openai.NotFoundError, match="no recorded response for POST /v1/embeddings"),
    ):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_bad_har_is_a_clear_error(tmp_path: Path) -> None:
    not_har = tmp_path / "x.har"
    not_har.write_text("[]")
    with pytest.raises(ReplayError, match=r"x\.har: not a HAR file"):
        start_sim(replay=not_har)
    with pytest.raises(ReplayError, match=r"missing\.har: cannot read"):
        start_sim(replay=tmp_path / "missing.har")
