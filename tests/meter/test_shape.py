"""Reading a conversation's next turn from the last one's shape (meter/shape.py): what it reads is
what a full parse reads, on real agent conversations and on bodies built to mislead it."""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
import pytest

from bbnet import providers
from meter import shape
from meter.prefix import Known, common_prefix, common_suffix, overlap
from tests.conftest import agent_corpus

FAMILY = providers.ANTHROPIC_MESSAGES


def _members(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def _follow(old: bytes, new: bytes, family: str = FAMILY) -> shape.Read | None:
    known = shape.of(old, family)
    assert known is not None
    prefix = common_prefix(old, new)
    return shape.follow(known, new, prefix, common_suffix(old, new, min(len(old), len(new)) - prefix))


def _body(messages: int, **after: object) -> bytes:
    doc: dict[str, Any] = {"model": "claude-x", "max_tokens": 100}
    doc["messages"] = [{"role": "user", "content": f"turn {i} " * 20} for i in range(messages)]
    doc.update({"system": "be brief", "stream": False} | after)
    return json.dumps(doc).encode()  # with spaces: what is read need not be compact


@pytest.mark.parametrize("agent", ["claude-code", "codex", "gemini-cli"])
def test_every_turn_of_an_agent_conversation_is_read_as_a_full_parse_reads_it(agent: str) -> None:
    corpus = agent_corpus()
    family = corpus.CORPUS[agent]
    turns = corpus.conversation(agent, seed=3)
    known = shape.of(turns[0].body, family)
    assert known is not None
    for before, turn in itertools.pairwise(turns):
        o = overlap(Known(before.body, before.real_input_tokens), turn.body)
        read = shape.follow(known, turn.body, o.prefix, o.suffix)
        assert read is not None
        full = orjson.loads(turn.body)
        assert _members(read.doc, known.key) == _members(full, known.key)
        elements = read.doc[known.key]
        assert elements and full[known.key][-len(elements) :] == elements
        assert read.shape == shape.of(turn.body, family)  # the shape it hands on is the body's own
        assert read.shape == shape.of(turn.body, family, full)  # found from the parse, not a token scan
        known = read.shape


def test_a_setting_changed_after_the_conversation_is_read_from_the_new_body() -> None:
    read = _follow(_body(3), _body(4, stream=True)[:-1] + b', "max_tokens": 5}')
    assert read is not None
    assert (
        read.doc["stream"] is True and read.doc["max_tokens"] == 5
    )  # the later duplicate wins, as in a parse
    assert read.doc["model"] == "claude-x"


def test_a_change_before_the_conversation_is_left_to_the_full_parse() -> None:
    assert _follow(_body(3), _body(4).replace(b'"max_tokens": 100', b'"max_tokens": 999')) is None
    assert _follow(_body(3), _body(4).replace(b"claude-x", b"claude-y")) is None


@pytest.mark.parametrize(
    ("why", "edit"),
    [
        ("the array left open", lambda b: b[: b.index(b'], "system"')]),
        ("a trailing comma", lambda b: b.replace(b'], "system"', b', ], "system"')),
        ("garbage after the array", lambda b: b.replace(b'], "system"', b'] "system"')),
        ("an element that is not JSON", lambda b: b.replace(b'"turn 3 ', b"turn 3 ", 1)),
        ("text after the object", lambda b: b + b" {}"),
        ("a second conversation", lambda b: b[:-1] + b', "messages": []}'),
    ],
)
def test_a_body_that_is_not_valid_json_or_holds_two_conversations_is_not_read(why: str, edit: Any) -> None:
    new = edit(_body(4))
    assert _follow(_body(3), new) is None, why


def test_bytes_that_close_the_conversation_early_are_read_as_members_like_a_parse_reads_them() -> None:
    """An agent crafting its next turn to end the array, set a member and open another cannot hide
    the member: everything after the shared elements is parsed."""
    old = _body(3)
    new = old.replace(
        b'], "system"', b', {"role": "user", "content": "x"}], "max_tokens": 1, "pad": [0], "system"'
    )
    read = _follow(old, new)
    assert read is not None
    assert _members(read.doc, "messages") == _members(orjson.loads(new), "messages")
    assert read.doc["max_tokens"] == 1


def test_no_shape_without_a_conversation_array() -> None:
    assert shape.of(b'{"model": "m", "messages": "a string prompt"}', FAMILY) is None
    assert shape.of(b'{"model": "m"}', FAMILY) is None
    assert shape.of(b'[{"messages": []}]', FAMILY) is None
    assert shape.of(_body(2), providers.OPENAI_EMBEDDINGS) is None  # no conversation in that family
    nested = b'{"meta": {"messages": [1]}, "messages": [{"a": 1}, {"b": 2}]}'
    found = shape.of(nested, FAMILY)
    assert found is not None and found.head == {"meta": {"messages": [1]}} and len(found.starts) == 2


def test_a_shape_from_the_parsed_body_is_the_one_a_token_scan_finds() -> None:
    compact = json.dumps(json.loads(_body(3)), separators=(",", ":")).encode()
    for body in (_body(3), compact):  # spaced: the parse's elements do not match the bytes, the scan runs
        assert shape.of(body, FAMILY, orjson.loads(body)) == shape.of(body, FAMILY) is not None
    twice = compact[:-1] + b',"messages":[]}'
    assert shape.of(twice, FAMILY) is None and shape.of(twice, FAMILY, orjson.loads(twice)) is None
