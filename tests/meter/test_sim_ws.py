"""The simulator's WebSocket APIs directly (no proxy): the raw ``websockets`` client and the SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
from openai.types.realtime.response_done_event import ResponseDoneEvent
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from meter.sim import SimHandle


def ws_url(sim: SimHandle, path: str) -> str:
    return sim.url.replace("http://", "ws://") + path


def events(sock: Connection, *last: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = [json.loads(sock.recv(timeout=20))]
    while seen[-1]["type"] not in last:
        seen.append(json.loads(sock.recv(timeout=20)))
    return seen


def test_responses_socket_events_and_stats(sim: SimHandle) -> None:
    before = sim.stats()
    with connect(ws_url(sim, "/v1/responses")) as sock:
        sock.send(json.dumps({"type": "response.create", "model": "m", "input": "abcd" * 5, "max_output_tokens": 3,
                              "stream_id": "lane-1"}))  # fmt: skip
        got = events(sock, "response.completed", "response.incomplete")
        sock.send("{not json")
        [error] = events(sock, "error")
        sock.send(json.dumps({"type": "response.create", "input": "no model"}))
        [invalid] = events(sock, "error")
    assert [e["type"] for e in got[:2]] == ["response.created", "response.in_progress"]
    assert sum(e["type"] == "response.output_text.delta" for e in got) == 3
    assert {e["stream_id"] for e in got} == {"lane-1"}
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert got[-1]["response"]["usage"]["input_tokens"] == 8 + 5  # the simulator's documented rule
    assert "invalid JSON" in error["error"]["message"] and "model" in invalid["error"]["message"]
    after = sim.stats()
    assert after["total"] - before["total"] == 2  # both response.create messages; bad JSON is not a request
    assert after["by_status"].get("400", 0) - before["by_status"].get("400", 0) == 1
    assert after["output_tokens"] - before["output_tokens"] == 3


def test_realtime_with_the_sdk(sim: SimHandle) -> None:
    client = openai.OpenAI(api_key="sk-sim", base_url=sim.url + "/v1", max_retries=0)
    with client.realtime.connect(model="gpt-realtime") as rt:
        first = next(iter(rt))
        assert first.type == "session.created"
        rt.session.update(session={"type": "realtime", "output_modalities": ["audio"]})
        rt.response.create(response={"max_output_tokens": 8})
        done = next(e for e in rt if isinstance(e, ResponseDoneEvent))
    usage = done.response.usage
    assert usage is not None and usage.output_token_details is not None
    assert (usage.output_token_details.text_tokens, usage.output_token_details.audio_tokens) == (2, 6)
    assert done.response.status == "incomplete"


def test_plain_get_on_a_socket_path_is_404(sim: SimHandle) -> None:
    assert httpx2.get(sim.url + "/v1/realtime").status_code == 404
