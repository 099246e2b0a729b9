"""The simulator over raw HTTP: Gemini and Bedrock wire formats (Bedrock streams decoded with
meter.eventstream), control endpoints and stats, error shapes, streaming with real delays,
keep-alive and concurrency."""

from __future__ import annotations

import base64
import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meter.eventstream import EventStreamDecoder
from meter.sim import SimHandle, start_sim
from meter.sim_plan import INPUT_OVERHEAD_TOKENS

OUTPUT_DEFAULT = 6
PROMPT = "Count the tokens in this prompt, please."
EXPECTED_INPUT = INPUT_OVERHEAD_TOKENS + math.ceil(len(PROMPT) / 4)
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with start_sim(output_tokens=OUTPUT_DEFAULT) as handle:
        yield handle


class Client:
    """One keep-alive connection to the simulator."""

    def __init__(self, handle: SimHandle) -> None:
        host, port = handle.server.server_address[:2]
        self.conn = http.client.HTTPConnection(str(host), port, timeout=10)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.conn.request("POST", path, raw, {"content-type": "application/json", **(headers or {})})
        return self.conn.getresponse()

    def get_json(self, path: str) -> Any:
        self.conn.request("GET", path)
        return json.loads(self.conn.getresponse().read())

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client(sim: SimHandle) -> Iterator[Client]:
    c = Client(sim)
    yield c
    c.close()


def eventstream_messages(response: http.client.HTTPResponse) -> list[tuple[dict[str, str], bytes]]:
    decoder = EventStreamDecoder()
    messages = []
    while chunk := response.read1(4096):
        messages += decoder.feed(chunk)
    assert decoder.pending == 0
    return messages


GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
    "generationConfig": {"maxOutputTokens": 4},
}


def test_gemini_generate_content(client: Client) -> None:
    response = client.post("/v1beta/models/gemini-2.0-flash:generateContent", GEMINI_BODY)
    assert response.status == 200
    body = json.loads(response.read())
    assert body["usageMetadata"]["promptTokenCount"] == EXPECTED_INPUT
    assert body["usageMetadata"]["candidatesTokenCount"] == 4
    assert body["usageMetadata"]["totalTokenCount"] == EXPECTED_INPUT + 4
    assert body["modelVersion"] == "gemini-2.0-flash"
    [candidate] = body["candidates"]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert len(candidate["content"]["parts"][0]["text"].split()) == 4


def test_gemini_stream_as_json_array(client: Client) -> None:
    response = client.post("/v1beta/models/gemini-2.0-flash:streamGenerateContent", {"contents": [PROMPT]})
    assert response.getheader("transfer-encoding") == "chunked"
    chunks = json.loads(response.read())
    assert isinstance(chunks, list)
    assert len(chunks) == OUTPUT_DEFAULT
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == OUTPUT_DEFAULT
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert len(text.split()) == OUTPUT_DEFAULT


def test_gemini_stream_as_sse(client: Client) -> None:
    response = client.post("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", GEMINI_BODY)
    assert response.getheader("content-type", "").startswith("text/event-stream")
    raw = response.read().decode()
    events = [json.loads(block.removeprefix("data: ")) for block in raw.split("\r\n\r\n") if block]
    assert len(events) == 4
    assert events[-1]["usageMetadata"] == {
        "promptTokenCount": EXPECTED_INPUT,
        "candidatesTokenCount": 4,
        "totalTokenCount": EXPECTED_INPUT + 4,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": EXPECTED_INPUT}],
    }


CONVERSE_BODY = {
    "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
    "inferenceConfig": {"maxTokens": 3},
}


def test_bedrock_converse(client: Client) -> None:
    response = client.post(f"/model/{BEDROCK_MODEL}/converse", CONVERSE_BODY)
    assert response.getheader("x-amzn-RequestId")
    body = json.loads(response.read())
    assert body["usage"] == {
        "inputTokens": EXPECTED_INPUT,
        "outputTokens": 3,
        "totalTokens": EXPECTED_INPUT + 3,
    }
    assert body["stopReason"] == "max_tokens"
    assert len(body["output"]["message"]["content"][0]["text"].split()) == 3


def test_bedrock_converse_stream(client: Client) -> None:
    quoted_model = BEDROCK_MODEL.replace(":", "%3A")  # what the AWS SDKs send
    response = client.post(f"/model/{quoted_model}/converse-stream", {"messages": CONVERSE_BODY["messages"]})
    assert response.getheader("content-type") == "application/vnd.amazon.eventstream"
    messages = eventstream_messages(response)
    assert all(
        h[":message-type"] == "event" and h[":content-type"] == "application/json" for h, _ in messages
    )
    kinds = [h[":event-type"] for h, _ in messages]
    assert kinds == [
        "messageStart",
        *["contentBlockDelta"] * OUTPUT_DEFAULT,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    payloads = [json.loads(p) for _, p in messages]
    assert len("".join(p["delta"]["text"] for p in payloads[1:-3]).split()) == OUTPUT_DEFAULT
    assert payloads[-2]["stopReason"] == "end_turn"
    assert payloads[-1]["usage"] == {
        "inputTokens": EXPECTED_INPUT,
        "outputTokens": OUTPUT_DEFAULT,
        "totalTokens": EXPECTED_INPUT + OUTPUT_DEFAULT,
    }


INVOKE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 2,
    "messages": [{"role": "user", "content": PROMPT}],
}


def test_bedrock_invoke_anthropic_body(client: Client) -> None:
    response = client.post(f"/model/{BEDROCK_MODEL}/invoke", INVOKE_BODY)
    assert response.getheader("X-Amzn-Bedrock-Output-Token-Count") == "2"
    body = json.loads(response.read())
    assert body["type"] == "message"
    assert body["model"] == BEDROCK_MODEL
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (EXPECTED_INPUT, 2)


def test_bedrock_invoke_with_response_stream(client: Client) -> None:
    response = client.post(f"/model/{BEDROCK_MODEL}/invoke-with-response-stream", INVOKE_BODY)
    messages = eventstream_messages(response)
    assert {h[":event-type"] for h, _ in messages} == {"chunk"}
    events = [json.loads(base64.b64decode(json.loads(p)["bytes"])) for _, p in messages]
    assert events[0]["type"] == "message_start"
    assert events[-2]["usage"]["output_tokens"] == 2
    assert events[-1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == EXPECTED_INPUT


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        (
            "/v1/nowhere",
            {},
            {"error": {"message": "Invalid URL (POST /v1/nowhere)", "type": "invalid_request_error"}},
        ),
        (
            "/v1/nowhere",
            {"anthropic-version": "2023-06-01"},
            {"type": "error", "error": {"type": "not_found_error"}},
        ),
        ("/v1beta/nowhere", {}, {"error": {"code": 404, "status": "NOT_FOUND"}}),
        ("/model/x/nowhere", {}, {"message": "Invalid URL (POST /model/x/nowhere)"}),
    ],
)
def test_unknown_path_is_404_in_the_provider_shape(
    client: Client, path: str, headers: dict[str, str], expected: dict[str, Any]
) -> None:
    response = client.post(path, {}, headers)
    assert response.status == 404
    body = json.loads(response.read())

    def contains(actual: Any, wanted: Any) -> bool:
        if isinstance(wanted, dict):
            return isinstance(actual, dict) and all(contains(actual.get(k), v) for k, v in wanted.items())
        return bool(actual == wanted)

    assert contains(body, expected), body


def test_bad_request_is_400_naming_the_problem(client: Client) -> None:
    response = client.post("/v1/messages", {"model": "m", "messages": []})
    assert response.status == 400
    assert json.loads(response.read())["error"]["message"] == "max_tokens: field required"
    response = client.post("/v1/chat/completions", b"{not json")
    assert response.status == 400
    assert "not valid JSON" in json.loads(response.read())["error"]["message"]


def raw_exchange(handle: SimHandle, request: bytes) -> bytes:
    host, port = handle.server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while data := sock.recv(65536):
            received += data
    return received


def test_chunked_request_body_is_read(sim: SimHandle) -> None:
    body = json.dumps(
        {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": PROMPT}]}
    ).encode()
    framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    head = (
        b"POST /v1/messages HTTP/1.1\r\nhost: sim\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    answer = raw_exchange(sim, head + framed)
    assert answer.startswith(b"HTTP/1.1 200")
    usage = json.loads(answer.split(b"\r\n\r\n", 1)[1])["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (EXPECTED_INPUT, 2)


@pytest.mark.parametrize(
    ("framing", "status"),
    [
        (b"content-length: -4\r\n", b"400"),
        (b"transfer-encoding: chunked\r\n\r\nzz\r\n", b"400"),
        (b"content-length: %d\r\n" % (64 * 1024 * 1024), b"413"),
    ],
)
def test_bad_body_framing_is_refused(sim: SimHandle, framing: bytes, status: bytes) -> None:
    answer = raw_exchange(sim, b"POST /v1/messages HTTP/1.1\r\nhost: sim\r\n" + framing + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 " + status)


def test_stats_count_and_reset(client: Client) -> None:
    assert json.loads(client.post("/_sim/reset", b"").read()) == {"reset": True}
    client.post(
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": PROMPT}]}
    ).read()
    client.post("/v1/chat/completions", {"model": "m", "messages": [], "stream": True}).read()
    client.post(f"/model/{BEDROCK_MODEL}/converse-stream", CONVERSE_BODY).read()
    client.post("/v1/unknown", {}).read()
    stats = client.get_json("/_sim/stats")
    assert stats["total"] == 4
    assert stats["streamed"] == 2
    assert stats["by_family"] == {"openai-chat": 2, "bedrock-converse": 1, "unknown": 1}
    assert stats["by_path"]["/v1/chat/completions"] == 2
    assert stats["by_status"] == {"200": 3, "404": 1}
    assert stats["requests"] == {
        "POST /v1/chat/completions 200": 2,
        f"POST /model/{BEDROCK_MODEL}/converse-stream 200": 1,
        "POST /v1/unknown 404": 1,
    }
    assert stats["input_tokens"] == EXPECTED_INPUT + INPUT_OVERHEAD_TOKENS + EXPECTED_INPUT
    assert stats["output_tokens"] == OUTPUT_DEFAULT + OUTPUT_DEFAULT + 3
    client.post("/_sim/reset", b"").read()
    assert client.get_json("/_sim/stats")["total"] == 0
    assert client.get_json("/_sim/health") == {"status": "ok", "mode": "generate"}


def test_keep_alive_reuses_one_connection(client: Client) -> None:
    client.post("/v1/responses", {"model": "m", "input": PROMPT}).read()
    first = client.conn.sock
    assert first is not None
    for stream in (False, True, False):
        client.post("/v1/responses", {"model": "m", "input": PROMPT, "stream": stream}).read()
        assert client.conn.sock is first


def test_stream_events_arrive_spaced_by_the_chunk_delay() -> None:
    with start_sim(latency_ms=100, chunk_delay_ms=60, output_tokens=3) as sim:
        c = Client(sim)
        started = time.monotonic()
        response = c.post("/v1/messages", {"model": "m", "max_tokens": 9, "messages": [], "stream": True})
        arrivals = []
        while chunk := response.read1(65536):
            arrivals.append((time.monotonic() - started, chunk))
        c.close()
    # 9 events (message_start, content_block_start, ping, 3 deltas, content_block_stop,
    # message_delta, message_stop): 8 gaps of 60 ms
    assert arrivals[0][0] >= 0.1  # the latency comes before the first byte
    assert arrivals[-1][0] - arrivals[0][0] >= 8 * 0.06 * 0.9
    assert len(arrivals) >= 5  # delivered piecemeal, not buffered into one read


def test_dozens_of_concurrent_streams() -> None:
    """Forty streams are open at once (counted, not timed): each is counted from its first event
    until its last, and the peak shows the simulator served them side by side."""
    clients = 40
    results: list[int] = []
    lock = threading.Lock()
    open_now = peak = 0

    def one(handle: SimHandle) -> None:
        nonlocal open_now, peak
        c = Client(handle)
        response = c.post(f"/model/{BEDROCK_MODEL}/converse-stream", CONVERSE_BODY)
        decoder = EventStreamDecoder()
        messages = decoder.feed(response.read1(4096))
        with lock:
            open_now += 1
            peak = max(peak, open_now)
        while chunk := response.read1(4096):
            messages += decoder.feed(chunk)
        with lock:
            open_now -= 1
            results.append(len(messages))
        c.close()

    with start_sim(chunk_delay_ms=300, output_tokens=3) as slow:
        threads = [threading.Thread(target=one, args=(slow,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert slow.stats()["total"] == clients
    assert results == [7] * clients  # messageStart, 3 deltas, blockStop, messageStop, metadata
    # served one after another, at most two would ever be open at once (one ending, one starting)
    assert peak >= 4, peak


def test_stop_closes_the_port_and_open_connections() -> None:
    handle = start_sim()
    c = Client(handle)
    c.post("/v1/responses", {"model": "m", "input": "x"}).read()
    address = handle.server.server_address[:2]
    handle.stop()
    assert not handle.thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection((str(address[0]), address[1]), timeout=1).close()
    c.close()
