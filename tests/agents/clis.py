"""The three real agent CLIs, as the tests run them in a bottle: argv, environment, the files a
fresh HOME needs, and what each one reports it spent, read from its own JSON output.

Each runs non-interactively through the bottle's proxy (the meter) with a fake key, trusting the
meter's CA, and with everything that is not an LLM call switched off that a switch exists for
(telemetry, update checks, plugin and settings fetches). What each still sends is listed in
tests/agents/README.md.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import REPO

BIN = REPO / ".tools" / "agents" / "node_modules" / ".bin"
PROMPT = "Reply with one short sentence about budgets. Do not use any tools."


@dataclass(frozen=True)
class ModelSpend:
    calls: int | None  # None: the CLI does not say how many requests it made
    input_tokens: int  # all input, cache reads and writes included (the ledger's sense)
    output_tokens: int  # all output, reasoning included


@dataclass(frozen=True)
class Reported:
    """What the agent says it spent, summed over its calls; per model where it tells."""

    input_tokens: int
    output_tokens: int
    models: dict[str, ModelSpend] = field(default_factory=dict)
    cost_usd: float | None = None  # the agent's own figure, where it gives one


@dataclass(frozen=True)
class Cli:
    name: str
    provider: str  # the ledger's provider key for its calls
    argv: Callable[[str], list[str]]
    env: Callable[[Path], dict[str, str]]  # from HOME
    prepare: Callable[[Path], None]  # writes config under HOME
    report: Callable[[str], Reported]  # from stdout

    @property
    def binary(self) -> Path:
        return BIN / self.name


# -- Claude Code -------------------------------------------------------------------------------


def _claude_report(stdout: str) -> Reported:
    doc = json.loads(stdout)
    models = {
        name: ModelSpend(
            None,
            m["inputTokens"] + m["cacheReadInputTokens"] + m["cacheCreationInputTokens"],
            m["outputTokens"],
        )
        for name, m in doc["modelUsage"].items()
    }
    u = doc["usage"]
    total_in = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    return Reported(total_in, u["output_tokens"], models, doc["total_cost_usd"])


CLAUDE = Cli(
    name="claude",
    provider="anthropic",
    argv=lambda prompt: [str(BIN / "claude"), "-p", prompt, "--output-format", "json"],
    env=lambda home: {
        "ANTHROPIC_API_KEY": "sk-ant-api03-bbnet-test-not-a-key",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    },
    prepare=lambda home: None,
    report=_claude_report,
)

# -- Codex -------------------------------------------------------------------------------------

# A provider of our own is the one place Codex lets a test choose the transport: its built-in
# OpenAI provider opens a WebSocket to /v1/responses first and falls back to HTTPS (SSE) only
# after five failed tries. `supports_websockets = true` here selects the WebSocket path.
CODEX_CONFIG = """\
model_provider = "bbnet-openai"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.bbnet-openai]
name = "OpenAI through bbnet"
base_url = "https://api.openai.com/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
supports_websockets = {websockets}
request_max_retries = 1
stream_max_retries = 1
"""


# Codex's default transport: a WebSocket to /v1/responses, metered per response.create
CODEX_WEBSOCKETS = True


def _codex_prepare(home: Path) -> None:
    (home / ".codex").mkdir(exist_ok=True)
    config = CODEX_CONFIG.format(websockets=str(CODEX_WEBSOCKETS).lower())
    (home / ".codex" / "config.toml").write_text(config)


def _codex_report(stdout: str) -> Reported:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    turns = [e["usage"] for e in events if e.get("type") == "turn.completed"]
    # OpenAI's input_tokens include cached_input_tokens, output_tokens the reasoning ones
    return Reported(sum(t["input_tokens"] for t in turns), sum(t["output_tokens"] for t in turns))


CODEX = Cli(
    name="codex",
    provider="openai",
    argv=lambda prompt: [str(BIN / "codex"), "exec", "--json", "--skip-git-repo-check", prompt],
    env=lambda home: {"OPENAI_API_KEY": "sk-bbnet-test-not-a-key", "CODEX_HOME": str(home / ".codex")},
    prepare=_codex_prepare,
    report=_codex_report,
)

# -- Gemini CLI --------------------------------------------------------------------------------

GEMINI_SETTINGS: dict[str, Any] = {
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}
# The default model ("auto") first asks a small model to classify the prompt, in JSON mode; the
# simulator answers every request in plain text, so the CLI would retry that for minutes. A fixed
# model skips the router.
GEMINI_MODEL = "gemini-2.5-flash"


def _gemini_prepare(home: Path) -> None:
    (home / ".gemini").mkdir(exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_SETTINGS))


def _gemini_report(stdout: str) -> Reported:
    doc = json.loads(stdout[stdout.index("{") :])
    models = {
        name: ModelSpend(
            m["api"]["totalRequests"],
            m["tokens"]["prompt"],
            m["tokens"]["candidates"] + m["tokens"]["thoughts"],
        )
        for name, m in doc["stats"]["models"].items()
    }
    return Reported(
        sum(m.input_tokens for m in models.values()), sum(m.output_tokens for m in models.values()), models
    )


GEMINI = Cli(
    name="gemini",
    provider="google",
    argv=lambda prompt: [str(BIN / "gemini"), "-m", GEMINI_MODEL, "-p", prompt, "--output-format", "json"],
    env=lambda home: {"GEMINI_API_KEY": "bbnet-test-not-a-key", "GEMINI_CLI_TRUST_WORKSPACE": "true"},
    prepare=_gemini_prepare,
    report=_gemini_report,
)

ALL = (CLAUDE, CODEX, GEMINI)


def base_env(home: Path, proxy_url: str, ca: str) -> dict[str, str]:
    """What every CLI gets: a fresh HOME, the bottle's proxy, the meter's CA, node on PATH."""
    node = shutil.which("node")
    path = ":".join(dict.fromkeys([*([str(Path(node).parent)] if node else []), "/usr/bin", "/bin"]))
    return {
        "HOME": str(home),
        "PATH": path,
        "TERM": "dumb",
        "NO_COLOR": "1",
        "HTTPS_PROXY": proxy_url,
        "HTTP_PROXY": proxy_url,
        "https_proxy": proxy_url,
        "http_proxy": proxy_url,
        "NODE_EXTRA_CA_CERTS": ca,  # the Node CLIs (Claude Code's native build reads it too)
        "SSL_CERT_FILE": ca,  # Codex (Rust, rustls with the system store's path)
    }
