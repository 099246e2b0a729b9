"""An input estimate that learns each conversation: agents resend the same prefix every turn.

After a call commits, its request body and the real input tokens the provider counted for it are
remembered per (bottle, agent). A new request from the same agent is compared, as raw bytes, with
the bodies remembered: the part it shares with one of them at the start (the conversation so far)
and at the end (tools, settings after the messages) is already counted exactly; only the bytes in
between — the turns added since (and those dropped) — are estimated. No JSON is parsed: the cost
is a few memory comparisons and one scan of the changed bytes, whatever the body's size.

The changed bytes are priced by :func:`segment`: text by the heuristic's own rule
(meter/estimate.py) read straight off the JSON fragment — what is not keys, quotes, escapes or
punctuation, at ``CHARS_PER_TOKEN``, plus ``PER_MESSAGE`` per object — scaled by the agent's own
learned ratio of real tokens to those; long base64-like runs by what they are, as the heuristic
prices them — an image ``PER_IMAGE``, a document by its decoded size, an opaque blob the provider
does not bill (thinking signatures, encrypted reasoning) nothing. Pricing such a run per byte is
what made a pure byte comparison miss by 2x on the recordings' tail.

Pure apart from the memory itself (:class:`PrefixMemory`, a bounded LRU owned by the meter).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from meter.estimate import CHARS_PER_TOKEN, PER_DOCUMENT_BYTES_PER_TOKEN, PER_IMAGE, PER_MESSAGE
from meter.shape import Shape

DEFAULT_RATIO = 1.0  # real tokens per heuristic token of changed text, before an agent's own is learned
BLOCK = 4096  # compare in blocks (doubling while they match), then bisect inside the one that differs
MIN_SHARED = 0.5  # a remembered body is used only when at least half of it is shared
PER_AGENT = 8  # bodies remembered per agent (sub-agents and retries interleave conversations)
MAX_BYTES = 64 * 1024 * 1024  # all bodies remembered, over all agents
BLOB_MIN = 512  # a run of base64 characters this long is media or an opaque blob, not text
_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-"
_AS_RUNS = bytes(ord("A") if bytes([i]) in _BASE64 else ord(".") for i in range(256))  # base64 → A
_RUN = b"A" * BLOB_MIN
_UNBILLED = (b"signature", b"encrypted_content", b"thoughtSignature")
_LOOKBEHIND = 160  # bytes before a run searched for what it is (its key, its media type)
_KEY = re.compile(rb'"[A-Za-z_$][A-Za-z0-9_$-]{0,40}"\s*:')
_STRUCTURE = b'"\\{}[],:'  # quotes, escapes, punctuation: not text
_MIN_CHANGE = 64  # heuristic tokens of changed text below which a count's move is no measure of the ratio


def _same(a: bytes, i: int, b: memoryview, j: int, n: int) -> bool:
    """``a[i:i+n] == b[j:j+n]``, without copying either (a slice of bytes is a copy: 1 MB bodies)."""
    return a.startswith(b[j : j + n], i)


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    limit = min(len(a), len(b))
    view = memoryview(b)
    lo, step = 0, BLOCK
    while lo + step <= limit and _same(a, lo, view, lo, step):
        lo, step = lo + step, step * 2
    hi = min(lo + step, limit)  # the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _same(a, lo, view, lo, mid - lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the longest common suffix of ``a`` and ``b``, at most ``limit``."""
    limit = min(limit, len(a), len(b))
    view = memoryview(b)
    n, step = 0, BLOCK
    while n + step <= limit and _same(a, len(a) - n - step, view, len(b) - n - step, step):
        n, step = n + step, step * 2
    lo, hi = n, min(n + step, limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _same(a, len(a) - mid, view, len(b) - mid, mid - lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Known:
    """A committed call: its request body, the input tokens the provider counted, and where its
    conversation sits (meter/shape.py: the next turn is read from there), when known."""

    body: bytes
    input_tokens: int
    shape: Shape | None = None


@dataclass(frozen=True)
class Overlap:
    """How a new body differs from a known one: bytes added and bytes dropped between the parts
    they share at the start and at the end."""

    known: Known
    added: int
    dropped: int
    suffix: int  # bytes shared at the end

    @property
    def shared(self) -> int:
        return len(self.known.body) - self.dropped

    @property
    def prefix(self) -> int:
        """Bytes shared at the start."""
        return len(self.known.body) - self.dropped - self.suffix


def overlap(known: Known, body: bytes) -> Overlap:
    prefix = common_prefix(known.body, body)
    suffix = common_suffix(known.body, body, min(len(known.body), len(body)) - prefix)
    return Overlap(known, len(body) - prefix - suffix, len(known.body) - prefix - suffix, suffix)


def best_overlap(known: list[Known], body: bytes) -> Overlap | None:
    """The remembered body that shares the most with ``body``, if it shares enough. Newest first,
    and a body that ``body`` merely extends (almost nothing of it dropped) ends the search: in a
    conversation that is the one before, and the others need not be compared."""
    best: Overlap | None = None
    for k in reversed(known):
        o = overlap(k, body)
        if o.shared >= MIN_SHARED * len(k.body) and (best is None or o.shared > best.shared):
            best = o
            if o.dropped <= 256 + len(k.body) // 100:
                break
    return best


def _blob_tokens(before: bytes, run: int) -> int:
    """What one base64-like run of ``run`` bytes costs, from the bytes just before it."""
    if any(key in before for key in _UNBILLED):
        return 0
    if b"image" in before:
        return PER_IMAGE
    return run * 3 // 4 // PER_DOCUMENT_BYTES_PER_TOKEN


@dataclass(frozen=True)
class Segment:
    """Changed bytes: the heuristic's tokens for their text, and the tokens of the blobs in them."""

    plain: float  # the heuristic's tokens for the bytes that are not blobs
    blob_tokens: int


def _text_tokens(fragment: bytes) -> float:
    """The heuristic's price of a JSON fragment (meter/estimate.py), from its bytes alone: what is
    not keys, quotes, escapes or punctuation is text, plus PER_MESSAGE per object."""
    structure = len(fragment) - len(fragment.translate(None, _STRUCTURE))  # one pass, not one a byte
    keys = sum(len(m) - 3 for m in _KEY.findall(fragment))  # their quotes and colon are counted above
    return max(0, len(fragment) - structure - keys) / CHARS_PER_TOKEN + PER_MESSAGE * fragment.count(b"{")


def segment(body: bytes, start: int, end: int) -> Segment:
    """``body[start:end]`` as text and blob tokens; a blob's kind is read from the bytes
    before it, even those before ``start`` (its key may sit in the shared prefix)."""
    if end <= start:
        return Segment(0, 0)
    if end - start < BLOB_MIN:
        return Segment(_text_tokens(body[start:end]), 0)
    plain, tokens, at = 0.0, 0, start
    for run_start, run_end in _blobs(body[start:end].translate(_AS_RUNS), start):
        plain += _text_tokens(body[at:run_start])
        tokens += _blob_tokens(body[max(0, run_start - _LOOKBEHIND) : run_start], run_end - run_start)
        at = run_end
    return Segment(plain + _text_tokens(body[at:end]), tokens)


def _blobs(runs: bytes, offset: int) -> Iterator[tuple[int, int]]:
    """Each run of at least ``BLOB_MIN`` base64 characters, leftmost first and whole, as
    ``(start, end)`` plus ``offset``; ``runs`` is the bytes with base64 characters as ``A`` and
    the rest as ``.``: a substring search, where a regex tries every position of every word."""
    at = runs.find(_RUN)
    while at != -1:
        end = runs.find(b".", at + BLOB_MIN)
        end = len(runs) if end == -1 else end
        yield offset + at, offset + end
        at = runs.find(_RUN, end)


def estimate(o: Overlap, body: bytes, ratio: float) -> int:
    """The known call's real count, moved by what was added and dropped since."""
    return _moved(o, _changes(o, body), ratio)


def _moved(o: Overlap, changes: tuple[Segment, Segment], ratio: float) -> int:
    added, dropped = changes
    moved = (added.plain - dropped.plain) * ratio + added.blob_tokens - dropped.blob_tokens
    return max(1, round(o.known.input_tokens + moved))


def _changes(o: Overlap, body: bytes) -> tuple[Segment, Segment]:
    prefix = len(body) - o.added - o.suffix
    return segment(body, prefix, prefix + o.added), segment(o.known.body, prefix, prefix + o.dropped)


@dataclass(frozen=True)
class Recall:
    estimate: int  # input tokens
    overlap: Overlap  # with the remembered call the estimate comes from
    changes: tuple[Segment, Segment]  # the bytes added and dropped since it, priced


@dataclass
class _Agent:
    known: list[Known] = field(default_factory=list)  # newest last
    ratio: float = DEFAULT_RATIO


class PrefixMemory:
    """What the meter remembers of each agent's recent calls (bounded; oldest agents forgotten)."""

    def __init__(self, max_bytes: int = MAX_BYTES, per_agent: int = PER_AGENT) -> None:
        self.max_bytes = max_bytes
        self.per_agent = per_agent
        self._agents: OrderedDict[tuple[str, str], _Agent] = OrderedDict()
        self._bytes = 0

    def estimate(self, bottle: str, agent: str, body: bytes) -> int | None:
        """The learned estimate for ``body``, or None when nothing remembered is close enough."""
        found = self.recall(bottle, agent, body)
        return None if found is None else found.estimate

    def recall(self, bottle: str, agent: str, body: bytes) -> Recall | None:
        """The learned estimate for ``body`` and the remembered call it comes from, or None."""
        state = self._agents.get((bottle, agent))
        if state is None or not body:
            return None
        o = best_overlap(state.known, body)
        if o is None:
            return None
        changes = _changes(o, body)
        return Recall(_moved(o, changes, state.ratio), o, changes)

    def learn(self, bottle: str, agent: str, body: bytes, input_tokens: int, shape: Shape | None = None,
              recalled: Recall | None = None) -> None:  # fmt: skip
        """Remember a committed call's body and real input count; refine the agent's ratio (real
        tokens per heuristic token of changed text) from how much the count moved since a call it
        shares with. ``recalled``: what :meth:`recall` found for this body before it was sent; its
        comparison is reused (not made again) while the call it names is still remembered."""
        if not body or input_tokens <= 0:
            return
        key = (bottle, agent)
        state = self._agents.pop(key, None) or _Agent()
        self._agents[key] = state
        if recalled is not None and any(k is recalled.overlap.known for k in state.known):
            o: Overlap | None = recalled.overlap
            changes = recalled.changes
        else:
            o = best_overlap(state.known, body)
            changes = _changes(o, body) if o is not None else (Segment(0, 0), Segment(0, 0))
        if o is not None:
            added, dropped = changes
            changed = added.plain - dropped.plain
            if changed > _MIN_CHANGE:
                moved = input_tokens - o.known.input_tokens - added.blob_tokens + dropped.blob_tokens
                ratio = moved / changed
                if 0.1 < ratio < 10.0:  # an answer served from elsewhere (server tools) is no measure
                    state.ratio = 0.5 * state.ratio + 0.5 * ratio
        if o is not None and o.added == 0 and o.dropped == 0:
            state.known.remove(o.known)  # the same body again: keep one copy, the newest count
            self._bytes -= len(o.known.body)
        state.known.append(Known(body, input_tokens, shape))
        self._bytes += len(body)
        if len(state.known) > self.per_agent:
            self._bytes -= len(state.known.pop(0).body)
        while self._bytes > self.max_bytes and self._agents:
            _, oldest = self._agents.popitem(last=False)
            self._bytes -= sum(len(k.body) for k in oldest.known)
