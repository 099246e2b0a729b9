"""Every recorded exchange meters to exactly what the providers' SDKs report (truth.jsonl)."""

from __future__ import annotations

import pytest

from meter.replay import replay
from tests.meter.recordings import HAR, TOKEN_FIELDS, truth


@pytest.mark.parametrize("chunk_size", [1024, 7])
def test_replay_agrees_with_truth_on_every_entry(chunk_size: int) -> None:
    expected = truth()
    got = list(replay(HAR, chunk_size))
    assert len(got) == len(expected)
    for (index, call), want in zip(got, expected, strict=True):
        assert call is not None, f"entry {index} ({want['source']}) was not metered"
        row = call.row()
        assert not row["estimated"], f"entry {index} ({want['source']}) fell back to the estimate"
        assert (row["provider"], row["family"], call.stream) == (
            want["provider"],
            want["family"],
            want["stream"],
        )
        for field in (*TOKEN_FIELDS, "model"):
            assert row[field] == want[field], f"entry {index} ({want['source']}): {field}"
