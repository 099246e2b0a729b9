"""Any chunking and any content-encoding of every streamed recording gives the same usage."""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Callable, Iterator

import brotli
import pytest
from backports import zstd

from bbnet import providers
from meter.tap import StreamTap
from tests.meter.recordings import TOKEN_FIELDS, entries, truth

STREAMED = [
    (index, entry, want)
    for index, (entry, want) in enumerate(zip(entries(), truth(), strict=True))
    if want["stream"]
]
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "identity": lambda data: data,
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def random_splits(data: bytes, rng: random.Random, largest: int) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        step = rng.randint(1, largest)
        yield data[pos : pos + step]
        pos += step


def run_tap(family: str, encoding: str, chunks: Iterator[bytes]) -> tuple[bytes, StreamTap]:
    tap = StreamTap(family, encoding)
    forwarded = bytearray()
    for chunk in chunks:
        out = tap(chunk)
        assert out == [chunk], "the tap must forward every chunk at once, unchanged"
        forwarded += b"".join(out)
    assert tap(b"") == []
    return bytes(forwarded), tap


def test_there_are_streams_of_every_recorded_family() -> None:
    families = {want["family"] for _, _, want in STREAMED}
    assert families == {providers.ANTHROPIC_MESSAGES, providers.OPENAI_CHAT, providers.OPENAI_RESPONSES}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize(("index", "entry", "want"), STREAMED, ids=[str(i) for i, _, _ in STREAMED])
def test_random_splits_and_encodings_give_the_recorded_usage(
    index: int, entry: dict[str, object], want: dict[str, object], encoding: str
) -> None:
    text = entry["response"]["content"]["text"]  # type: ignore[index]
    wire = ENCODERS[encoding](text.encode())
    rng = random.Random(f"{index}-{encoding}")
    for largest in (1, 3, 17, 256, 4096):
        forwarded, tap = run_tap(str(want["family"]), encoding, random_splits(wire, rng, largest))
        assert forwarded == wire
        result = tap.result()
        assert not result.truncated and not result.malformed, result.problem
        assert result.usage is not None
        for field in (*TOKEN_FIELDS, "model"):
            assert getattr(result.usage, field) == want[field], f"{field} with chunks up to {largest} bytes"
