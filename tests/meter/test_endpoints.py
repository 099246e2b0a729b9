"""Every billed endpoint of the catalogue meters its authored exchange (tests/fixtures/endpoints)
to the usage its SDK reports, streams through any chunking and content-encoding; free endpoints
are not metered at all."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from bbnet import providers
from meter import estimate
from meter.replay import replay
from meter.tap import StreamTap
from tests.meter.recordings import TOKEN_FIELDS
from tests.meter.test_chunking import ENCODERS, random_splits

FIXTURES = Path(__file__).parents[1] / "fixtures" / "endpoints"
HAR = FIXTURES / "endpoints.har"
ENTRIES: list[dict[str, Any]] = json.loads(HAR.read_text())["log"]["entries"]
TRUTH: list[dict[str, Any]] = [
    json.loads(line) for line in (FIXTURES / "truth.jsonl").read_text().splitlines()
]
STREAMED = [(i, e, t) for i, (e, t) in enumerate(zip(ENTRIES, TRUTH, strict=True)) if t.get("stream")]


def request_body(entry: dict[str, Any]) -> bytes:
    return str(entry["request"].get("postData", {}).get("text", "")).encode()


def test_the_fixtures_cover_every_family_and_the_free_endpoints() -> None:
    families = {t["family"] for t in TRUTH if not t["free"]}
    assert families == set(providers.FAMILIES) - {providers.BEDROCK_CONVERSE, providers.BEDROCK_INVOKE}
    assert {t["provider"] for t in TRUTH if not t["free"]} >= {
        "azure",
        "chatgpt",
        "code-assist",
        "google",
        "anthropic",
    }
    assert sum(t["free"] for t in TRUTH) >= 5


@pytest.mark.parametrize("chunk_size", [4096, 5])
def test_each_entry_meters_to_its_truth(chunk_size: int) -> None:
    got = list(replay(HAR, chunk_size))
    assert len(got) == len(TRUTH)
    for (index, call), want in zip(got, TRUTH, strict=True):
        if want["free"]:
            assert call is None, f"entry {index} ({want['source']}) is free but was metered"
            continue
        assert call is not None, f"entry {index} ({want['source']}) was not metered"
        row = call.row()
        assert (row["provider"], row["family"], call.stream) == (
            want["provider"],
            want["family"],
            want["stream"],
        )
        assert row["estimated"] == want["estimated"], want["source"]
        assert row["model"] == want["model"], want["source"]
        if want["estimated"]:  # no usage in the answer: the input estimate, no output
            body = request_body(ENTRIES[index])
            assert row["input_tokens"] == estimate.input_tokens_from_bytes(want["family"], body) > 0
            assert row["output_tokens"] == 0
            continue
        for field in TOKEN_FIELDS:
            assert row[field] == want[field], f"entry {index} ({want['source']}): {field}"


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize(("index", "entry", "want"), STREAMED, ids=[t["source"] for _, _, t in STREAMED])
def test_streams_give_their_truth_through_random_splits(
    index: int, entry: dict[str, Any], want: dict[str, Any], encoding: str
) -> None:
    wire = ENCODERS[encoding](str(entry["response"]["content"]["text"]).encode())
    rng = random.Random(f"{index}-{encoding}")
    content_type = next(h["value"] for h in entry["response"]["headers"] if h["name"] == "content-type")
    hint = json.loads(request_body(entry)).get("model")  # what the gate takes from the request
    for largest in (1, 3, 17, 256, 4096):
        tap = StreamTap(want["family"], encoding, content_type=content_type, model_hint=hint)
        forwarded = b"".join(b"".join(tap(chunk)) for chunk in random_splits(wire, rng, largest))
        assert tap(b"") == []
        assert forwarded == wire
        result = tap.result()
        assert not result.truncated and not result.malformed, result.problem
        assert result.usage is not None
        for field in TOKEN_FIELDS:
            assert getattr(result.usage, field) == want[field], f"{field} with chunks up to {largest} bytes"
        assert result.usage.model == want["model"]


@pytest.mark.parametrize(("index", "entry", "want"), list(zip(range(len(TRUTH)), ENTRIES, TRUTH, strict=True)),
                         ids=[t["source"] for t in TRUTH])  # fmt: skip
def test_the_catalogue_classifies_each_entry(index: int, entry: dict[str, Any], want: dict[str, Any]) -> None:
    url = str(entry["request"]["url"])
    host, _, path = url.removeprefix("https://").partition("/")
    match = providers.classify(host, "/" + path)
    assert match is not None, url
    assert providers.is_free(host, "/" + path) is want["free"]
    if not want["free"]:
        assert (match.provider, match.family) == (want["provider"], want["family"])


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("api.openai.com", "/v1/files"),
        ("api.anthropic.com", "/v1/complete"),
        ("cloudcode-pa.googleapis.com", "/v1internal:somethingNew"),
        ("aiplatform.googleapis.com", "/v1/projects/p/locations/l/publishers/meta/models/llama:rawPredict"),
        ("chatgpt.com", "/backend-api/conversation"),
        ("example.openai.azure.com.evil.test", "/openai/v1/chat/completions"),
    ],
)
def test_unknown_paths_are_neither_billed_nor_free(host: str, path: str) -> None:
    assert providers.classify(host, path) is None
    assert not providers.is_free(host, path)
