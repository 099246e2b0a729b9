"""Locating the shared recordings (``shared/`` beside the repo, or ``$BBNET_SHARED``)."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import SHARED

RECORDINGS = SHARED / "fixtures" / "recordings"
HAR = RECORDINGS / "recordings.har"
TRUTH = RECORDINGS / "truth.jsonl"
TOKEN_FIELDS = (
    "input_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def truth() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TRUTH.read_text().splitlines() if line.strip()]


def entries() -> list[dict[str, Any]]:
    return list(json.loads(HAR.read_text())["log"]["entries"])
