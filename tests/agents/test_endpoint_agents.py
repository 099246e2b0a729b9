"""The real agent CLIs on the other endpoints they bill through, in a bottle, through `bbnet serve`:

- Claude Code on Vertex AI (``CLAUDE_CODE_USE_VERTEX``): Claude's Messages API at
  ``{region}-aiplatform.googleapis.com``, the model in the path, metered under ``anthropic``;
- Gemini CLI logged in with Google (an access token stands for the login): Code Assist at
  ``cloudcode-pa.googleapis.com/v1internal:…``, metered under ``code-assist``, after the free
  session calls it makes first (``loadCodeAssist`` for the account's tier and project, experiments,
  quota), which pass unmetered.

Each call is one usage row equal to what the agent itself reports, and every billed request the
simulator answered has its row; the free ones have none.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bbnet.providers import FREE
from meter.sim import SimHandle
from meter.sim_route import route
from tests.agents.clis import CLAUDE, GEMINI, Cli
from tests.agents.runner import no_reservations, run_ok, sim_requests, usage
from tests.service.harness import Service, create_bottle, eventually

pytestmark = [pytest.mark.root, pytest.mark.slow]

VERTEX_MODEL = "claude-sonnet-4-5@20250929"
CLAUDE_VERTEX = Cli(
    name="claude",
    provider="anthropic",
    argv=CLAUDE.argv,
    env=lambda home: {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",  # the bottle has no Google credentials
        "ANTHROPIC_VERTEX_PROJECT_ID": "bbnet-test",
        "CLOUD_ML_REGION": "us-east5",
        "ANTHROPIC_MODEL": VERTEX_MODEL,
        **{k: v for k, v in CLAUDE.env(home).items() if k != "ANTHROPIC_API_KEY"},
    },
    prepare=CLAUDE.prepare,
    report=CLAUDE.report,
)
GEMINI_CODE_ASSIST = Cli(
    name="gemini",
    provider="code-assist",
    argv=GEMINI.argv,
    env=lambda home: {
        "GOOGLE_GENAI_USE_GCA": "true",
        "GOOGLE_CLOUD_ACCESS_TOKEN": "ya29.bbnet-test-not-a-token",
        **{k: v for k, v in GEMINI.env(home).items() if k != "GEMINI_API_KEY"},
    },
    prepare=GEMINI.prepare,
    report=GEMINI.report,
)
VARIANTS = {
    "claude-vertex": (CLAUDE_VERTEX, "us-east5-aiplatform.googleapis.com"),
    "gemini-code-assist": (GEMINI_CODE_ASSIST, "cloudcode-pa.googleapis.com"),
}


def split(requests: Counter[str]) -> tuple[list[str], list[str]]:
    """(billed, free) provider-path requests the simulator answered, one entry per request."""
    billed: list[str] = []
    free: list[str] = []
    for line, count in requests.items():
        _, path, status = line.split(" ")
        found = route(path)
        if found is None:
            continue
        assert status == "200", f"the simulator refused a provider call: {line}"
        (free if found.family == FREE else billed).extend([path] * count)
    return sorted(billed), sorted(free)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_call_is_one_usage_row_equal_to_what_the_agent_reports(
    variant: str, service: Service, sim: SimHandle, tmp_path: Path
) -> None:
    cli, host = VARIANTS[variant]
    sim.reset()
    bottle = create_bottle(service, f"ep-{variant}"[:32])
    run = run_ok(service, bottle, cli, tmp_path, "run")
    reported = cli.report(run.stdout())
    eventually(lambda: no_reservations(service), 60, "every call committed")
    rows = usage(service, bottle)
    billed, free = split(sim_requests(sim))

    assert rows and sorted(r["path"] for r in rows) == billed  # nothing billed went unmetered
    assert all(p not in billed for p in free)
    if cli is GEMINI_CODE_ASSIST:
        assert "/v1internal:loadCodeAssist" in free  # answered, passed free, no row
    assert all(
        (r["provider"], r["host"], r["estimated"], r["status"]) == (cli.provider, host, 0, 200) for r in rows
    )
    spent = (sum(r["input_tokens"] for r in rows), sum(r["output_tokens"] for r in rows))
    assert spent == (reported.input_tokens, reported.output_tokens)
    for model, spend in reported.models.items():
        mine = [r for r in rows if r["model"] == model]
        assert (sum(r["input_tokens"] for r in mine), sum(r["output_tokens"] for r in mine)) == (
            spend.input_tokens,
            spend.output_tokens,
        )
    assert all(r["cost_usd"] is not None and r["cost_usd"] > 0 for r in rows)  # list prices found
    if reported.cost_usd is not None:
        assert sum(r["cost_usd"] for r in rows) == pytest.approx(reported.cost_usd, rel=0.01)
