"""The AWS event-stream codec: known vectors, round trips, arbitrary splits, corruption, bounds."""

from __future__ import annotations

import itertools
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meter.eventstream import (
    MAX_PAYLOAD_LENGTH,
    EventStreamDecoder,
    EventStreamError,
    decode_headers,
    encode_event,
)

# Published vectors of the AWS event-stream test suite (shared by aws-c-event-stream and botocore).
EMPTY_MESSAGE = b"\x00\x00\x00\x10\x00\x00\x00\x00\x05\xc2H\xeb}\x98\xc8\xff"
ONE_STRING_HEADER = (
    b"\x00\x00\x00=\x00\x00\x00 \x07\xfd\x83\x96\x0ccontent-type\x07\x00\x10"
    b"application/json{'foo':'bar'}\x8d\x9c\x08\xb1"
)
ALL_HEADER_TYPES = (
    b"\x00\x00\x00\x62\x00\x00\x00\x52\x03\xb5\xcb\x9c"
    b"\x010\x00\x011\x01\x012\x02\x02\x013\x03\x00\x03"
    b"\x014\x04\x00\x00\x00\x04\x015\x05\x00\x00\x00\x00\x00\x00\x00\x05"
    b"\x016\x06\x00\x05bytes\x017\x07\x00\x04utf8"
    b"\x018\x08\x00\x00\x00\x00\x00\x00\x00\x08\x019\x090123456789abcdef"
    b"\x63\x35\x36\x71"
)


def decode_all(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    decoder = EventStreamDecoder()
    messages = decoder.feed(data)
    assert decoder.pending == 0
    return messages


def test_encode_matches_published_vectors() -> None:
    assert encode_event({}, b"") == EMPTY_MESSAGE
    assert encode_event({"content-type": "application/json"}, b"{'foo':'bar'}") == ONE_STRING_HEADER


def test_decode_published_vectors() -> None:
    assert decode_all(EMPTY_MESSAGE + ONE_STRING_HEADER) == [
        ({}, b""),
        ({"content-type": "application/json"}, b"{'foo':'bar'}"),
    ]


def test_decode_every_header_type_as_text() -> None:
    [(headers, payload)] = decode_all(ALL_HEADER_TYPES)
    assert payload == b""
    assert headers == {
        "0": "true",
        "1": "false",
        "2": "2",
        "3": "3",
        "4": "4",
        "5": "5",
        "6": "Ynl0ZXM=",  # base64 of b"bytes"
        "7": "utf8",
        "8": "8",
        "9": "30313233-3435-3637-3839-616263646566",
    }


header_names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)
header_values = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
events = st.tuples(st.dictionaries(header_names, header_values, max_size=4), st.binary(max_size=300))


@given(st.lists(events, min_size=1, max_size=6), st.lists(st.integers(min_value=0), max_size=12))
def test_round_trip_split_anywhere(messages: list[tuple[dict[str, str], bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode_event(headers, payload) for headers, payload in messages)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    decoder = EventStreamDecoder()
    decoded: list[tuple[dict[str, str], bytes]] = []
    for start, end in itertools.pairwise(points):
        decoded += decoder.feed(wire[start:end])
    assert decoded == messages
    assert decoder.pending == 0


def test_byte_by_byte_yields_each_message_when_its_last_byte_arrives() -> None:
    first = encode_event({":event-type": "messageStart"}, b'{"role":"assistant"}')
    second = encode_event({":event-type": "messageStop"}, b"{}")
    decoder = EventStreamDecoder()
    seen = [decoder.feed(bytes([b])) for b in first + second]
    completed_at = [i for i, out in enumerate(seen) if out]
    assert completed_at == [len(first) - 1, len(first) + len(second) - 1]


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (0, "prelude CRC mismatch"),  # total length
        (5, "prelude CRC mismatch"),  # headers length
        (10, "prelude CRC mismatch"),  # the prelude CRC itself
        (20, "message CRC mismatch"),  # a header name
        (50, "message CRC mismatch"),  # the payload
        (len(ONE_STRING_HEADER) - 1, "message CRC mismatch"),  # the message CRC itself
    ],
)
def test_corruption_is_detected(index: int, message: str) -> None:
    with pytest.raises(EventStreamError, match=message):
        EventStreamDecoder().feed(flip(ONE_STRING_HEADER, index))


def with_prelude(total: int, headers_length: int) -> bytes:
    prelude = struct.pack(">II", total, headers_length)
    return prelude + struct.pack(">I", zlib.crc32(prelude))


def test_absurd_length_is_refused_from_the_prelude_alone() -> None:
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="payload, over"):
        decoder.feed(with_prelude(0xFFFFFFF0, 0))


def test_headers_length_beyond_limit_is_refused() -> None:
    with pytest.raises(EventStreamError, match="bytes of headers, over"):
        EventStreamDecoder().feed(with_prelude(1 << 20, 1 << 19))


def test_total_shorter_than_headers_is_refused() -> None:
    with pytest.raises(EventStreamError, match="too short"):
        EventStreamDecoder().feed(with_prelude(20, 10))


def test_largest_allowed_payload_is_accepted() -> None:
    payload = b"x" * MAX_PAYLOAD_LENGTH
    [(headers, decoded)] = decode_all(encode_event({"a": "b"}, payload))
    assert headers == {"a": "b"}
    assert decoded == payload


def test_encoder_refuses_oversized_payload_and_bad_names() -> None:
    with pytest.raises(EventStreamError, match="payload is"):
        encode_event({}, b"x" * (MAX_PAYLOAD_LENGTH + 1))
    with pytest.raises(EventStreamError, match="name must be 1-255 bytes"):
        encode_event({"": "v"}, b"")
    with pytest.raises(EventStreamError, match="name must be 1-255 bytes"):
        encode_event({"n" * 256: "v"}, b"")


def test_header_block_errors_name_the_header() -> None:
    with pytest.raises(EventStreamError, match="'k' has unknown value type 12"):
        decode_headers(b"\x01k\x0c")
    with pytest.raises(EventStreamError, match="'k' runs past the end"):
        decode_headers(b"\x01k\x07\x00\x09abc")
    with pytest.raises(EventStreamError, match="'k' appears twice"):
        decode_headers(b"\x01k\x00\x01k\x01")
