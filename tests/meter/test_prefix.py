"""The learning input estimate (meter/prefix.py): byte comparison, blob pricing, memory bounds, and
its error on grown agent conversations (bench/agent_corpus.py)."""

from __future__ import annotations

import statistics

import pytest

from meter import estimate
from meter.prefix import (
    BLOCK,
    DEFAULT_RATIO,
    Known,
    PrefixMemory,
    common_prefix,
    common_suffix,
    overlap,
)
from tests.conftest import agent_corpus


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (b"", b"abc", 0),
        (b"abc", b"abc", 3),
        (b"abc", b"abcdef", 3),
        (b"xbc", b"abc", 0),
        (b"a" * BLOCK + b"x", b"a" * BLOCK + b"y", BLOCK),
        (b"a" * (BLOCK - 1) + b"x", b"a" * BLOCK, BLOCK - 1),
        (b"a" * (3 * BLOCK + 17) + b"x" + b"tail", b"a" * (3 * BLOCK + 17) + b"y", 3 * BLOCK + 17),
    ],
)
def test_common_prefix(a: bytes, b: bytes, want: int) -> None:
    assert common_prefix(a, b) == common_prefix(b, a) == want


def test_common_suffix_stops_at_the_limit_and_at_the_first_difference() -> None:
    assert common_suffix(b"xabc", b"yabc", 10) == 3
    assert common_suffix(b"abc", b"abc", 2) == 2  # never overlaps the prefix already counted
    tail = b"t" * (2 * BLOCK + 5)
    assert common_suffix(b"head1" + tail, b"head22" + tail, 10**9) == len(tail)


def test_overlap_of_an_appended_turn() -> None:
    known = Known(b'{"messages":[{"a":1}],"tools":[]}', 10)
    o = overlap(known, b'{"messages":[{"a":1},{"b":2}],"tools":[]}')
    assert (o.added, o.dropped) == (8, 0)
    assert o.shared == len(known.body)


def _body(turns: int) -> bytes:
    return (
        b'{"messages":['
        + b",".join(b'{"role":"user","content":"%s"}' % (b"word " * 300) for _ in range(turns))
        + b"]}"
    )


def test_first_call_and_unrelated_bodies_fall_back() -> None:
    memory = PrefixMemory()
    assert memory.estimate("b", "a", _body(1)) is None  # nothing known: the heuristic's turn
    memory.learn("b", "a", _body(1), 500)
    assert memory.estimate("b", "other-agent", _body(1)) is None
    assert memory.estimate("other-bottle", "a", _body(1)) is None
    assert memory.estimate("b", "a", b"z" * len(_body(1))) is None  # shares nothing
    assert memory.estimate("b", "a", b"") is None


def test_identical_body_is_its_real_count_and_is_kept_once() -> None:
    memory = PrefixMemory()
    memory.learn("b", "a", _body(2), 700)
    memory.learn("b", "a", _body(2), 710)  # the same body again (a retry): the newest count wins
    assert memory.estimate("b", "a", _body(2)) == 710
    assert memory._bytes == len(_body(2))


def test_added_bytes_move_the_known_count() -> None:
    memory = PrefixMemory()
    memory.learn("b", "a", _body(1), 400)
    # added: ,{"role":"user","content":"word word ..."}: its text at the heuristic's rate, one object
    text = len("user") + len("word ") * 300
    want = 400 + DEFAULT_RATIO * (text / estimate.CHARS_PER_TOKEN + estimate.PER_MESSAGE)
    assert memory.estimate("b", "a", _body(2)) == round(want)
    assert memory.estimate("b", "a", _body(1)[:-2] + b"]}") == 400  # nothing changed


def test_the_agent_ratio_is_learned_from_how_counts_move() -> None:
    memory = PrefixMemory(per_agent=2)
    step = len(_body(2)) - len(_body(1))
    for n in range(1, 9):  # each turn adds 0.1 token per added byte
        memory.learn("b", "a", _body(n), 400 + (n - 1) * step // 10)
    guess = memory.estimate("b", "a", _body(9))
    assert guess is not None and abs(guess - (400 + 8 * step // 10)) < 0.01 * guess


def _with(blob: bytes) -> bytes:
    return _body(1)[:-2] + b',{"role":"user","content":[' + blob + b"]}]}"


def test_media_and_opaque_blobs_are_priced_by_kind_not_by_byte() -> None:
    data = b"QUJD" * 20_000  # 80 kB of base64
    image = b'{"type":"image","source":{"type":"base64","media_type":"image/png","data":"%s"}}' % data
    document = (
        b'{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"%s"}}' % data
    )
    signed = b'{"type":"thinking","thinking":"ok","signature":"%s"}' % data
    memory = PrefixMemory()
    memory.learn("b", "a", _body(1), 400)
    around = 100  # tokens: the JSON around each blob is priced per byte
    per_image = memory.estimate("b", "a", _with(image))
    assert per_image is not None and abs(per_image - (400 + estimate.PER_IMAGE)) < around
    per_document = memory.estimate("b", "a", _with(document))
    pages = len(data) * 3 // 4 // estimate.PER_DOCUMENT_BYTES_PER_TOKEN
    assert per_document is not None and abs(per_document - (400 + pages)) < around
    unbilled = memory.estimate("b", "a", _with(signed))
    assert unbilled is not None and unbilled - 400 < around


def test_memory_is_bounded_per_agent_and_in_bytes_oldest_agent_first() -> None:
    memory = PrefixMemory(max_bytes=3 * len(_body(3)), per_agent=2)
    for n in (1, 2, 3):
        memory.learn("b", "a", _body(n), 100 * n)
    assert [k.input_tokens for k in memory._agents["b", "a"].known] == [200, 300]
    memory.learn("b", "c", _body(3), 333)
    memory.learn("b", "a", _body(3), 301)  # a is now the most recent agent
    memory.learn("b", "d", _body(3), 444)  # over the cap: c, the least recently taught, goes
    assert memory.estimate("b", "c", _body(3)) is None
    assert memory.estimate("b", "d", _body(3)) == 444
    assert memory._bytes == sum(len(k.body) for s in memory._agents.values() for k in s.known)
    assert memory._bytes <= memory.max_bytes
    memory.learn("b", "e", b"x" * (memory.max_bytes + 1), 5)  # larger than the whole cap: not kept
    assert memory._bytes <= memory.max_bytes


@pytest.mark.parametrize("agent", ["claude-code", "codex", "gemini-cli"])
def test_learned_estimate_on_a_grown_agent_conversation_is_within_the_bound(agent: str) -> None:
    """Issue 13's targets on a multi-turn agent conversation: median error <= 3 %, p90 <= 10 %."""
    turns = agent_corpus().conversation(agent, seed=7)
    assert len(turns) > 20 and len(turns[-1].body) >= 1_000_000
    memory = PrefixMemory()
    errors = []
    for i, turn in enumerate(turns):
        if i:
            guess = memory.estimate("b", agent, turn.body)
            assert guess is not None
            errors.append(abs(guess - turn.real_input_tokens) / turn.real_input_tokens)
        memory.learn("b", agent, turn.body, turn.real_input_tokens)
    errors.sort()
    assert statistics.median(errors) <= 0.03 and errors[int(0.9 * len(errors))] <= 0.10, errors
