"""Print the input-token estimator's error distribution on the recordings, as JSON.

Usage: .venv/bin/python bench/estimate_bench.py [SHARED_DIR]   (default: ../shared beside the repo)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from meter import estimate


def main() -> None:
    default = os.environ.get("BBNET_SHARED") or Path(__file__).resolve().parents[2] / "shared"
    recordings = Path(sys.argv[1] if len(sys.argv) > 1 else default) / "fixtures" / "recordings"
    cases = estimate.recorded_cases(recordings / "recordings.har", recordings / "truth.jsonl")
    families = sorted({family for family, _, _ in cases})
    started = time.perf_counter()
    overall = estimate.error_distribution(cases)
    elapsed = time.perf_counter() - started
    report = {
        "estimator": "meter.estimate.input_tokens",
        "overall": overall.as_dict(),
        "by_family": {
            family: estimate.error_distribution(c for c in cases if c[0] == family).as_dict()
            for family in families
        },
        "us_per_estimate_incl_json_parse": round(elapsed / len(cases) * 1e6, 1),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
