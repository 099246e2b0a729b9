"""The egress decision as a pure function: host patterns, path prefixes, methods, presets, the
LLM hosts' metered, free, WebSocket and unmetered calls, raw connections; and the policy file's
one-line errors."""

from __future__ import annotations

import pytest

from bbnet import providers
from bbnet.egress import PRESETS, compile_policy, host_matches, prefix_matches
from bbnet.limits import SettingsError
from bbnet.settings import parse, parse_policy
from meter.egress import Verdict, decide, decide_connection

CAT = providers.BUILTIN
POLICY = compile_policy(
    parse_policy("""
presets: [github]
allow:
  - hosts: ["*.corp.example", tools.example]
    paths: [/api/]
    methods: [get, HEAD]
  - hosts: [api.openai.com]
    paths: [/v1/files]
    unmetered: allow
  - hosts: [db.example]
""")
)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [("*", "x.y", True), ("*.a.com", "b.a.com", True), ("*.a.com", "a.com", False), ("*.a.com", "ba.com", False),
     ("a.com", "a.com", True), ("a.com", "b.a.com", False)],
)  # fmt: skip
def test_host_patterns(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [("/api", "/api", True), ("/api/", "/api/x?q=1", True), ("/api", "/apix", False), ("/", "/x", True)],
)
def test_path_prefix_is_element_wise(prefix: str, path: str, expected: bool) -> None:
    assert prefix_matches(prefix, path) is expected


@pytest.mark.parametrize(
    ("method", "host", "path", "verdict"),
    [
        ("GET", "git.corp.example", "/api/v4/x", Verdict.ALLOWED),
        ("HEAD", "TOOLS.example.", "/api", Verdict.ALLOWED),
        ("POST", "git.corp.example", "/api/v4/x", Verdict.EGRESS_DENIED),
        ("GET", "git.corp.example", "/apiv4", Verdict.EGRESS_DENIED),
        ("GET", "corp.example", "/api/x", Verdict.EGRESS_DENIED),
        ("GET", "codeload.github.com", "/x.tar.gz", Verdict.ALLOWED),  # a preset's host
        ("GET", "telemetry.example", "/", Verdict.EGRESS_DENIED),
        ("POST", "api.anthropic.com", "/v1/messages", Verdict.METERED),
        ("POST", "api.anthropic.com", "/v1/messages/count_tokens", Verdict.FREE),
        ("GET", "api.anthropic.com", "/v1/models", Verdict.FREE),
        ("POST", "api.anthropic.com", "/v1/messages/batches", Verdict.UNMETERED),
        ("GET", "api.anthropic.com", "/v1/messages", Verdict.UNMETERED),
        ("GET", "api.openai.com", "/v1/models/gpt-5", Verdict.FREE),
        ("POST", "api.openai.com", "/v1/responses/input_tokens", Verdict.FREE),
        ("POST", "api.openai.com", "/v1/files", Verdict.ALLOWED),  # its escape
        ("POST", "api.openai.com", "/v1/batches", Verdict.UNMETERED),
        (
            "POST",
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-pro:countTokens",
            Verdict.FREE,
        ),
        ("GET", "generativelanguage.googleapis.com", "/v1beta/models", Verdict.FREE),
        ("POST", "generativelanguage.googleapis.com", "/v1beta/cachedContents", Verdict.UNMETERED),
        ("GET", "api.groq.com", "/openai/v1/models", Verdict.FREE),
    ],
)
def test_decide(method: str, host: str, path: str, verdict: Verdict) -> None:
    assert decide(POLICY, CAT, method, host, path).verdict is verdict


def test_websocket_upgrades() -> None:
    assert (
        decide(POLICY, CAT, "GET", "api.openai.com", "/v1/responses", "websocket").verdict
        is Verdict.WEBSOCKET
    )
    assert (
        decide(POLICY, CAT, "GET", "api.openai.com", "/v1/realtime?model=x", "WebSocket").verdict
        is Verdict.WEBSOCKET
    )
    assert (
        decide(POLICY, CAT, "GET", "api.openai.com", "/v1/chat/completions", "websocket").verdict
        is Verdict.UNMETERED
    )
    assert (
        decide(POLICY, CAT, "GET", "api.anthropic.com", "/v1/messages", "websocket").verdict
        is Verdict.UNMETERED
    )


def test_raw_connections_need_a_whole_host_rule() -> None:
    assert decide_connection(POLICY, CAT, "db.example").verdict is Verdict.ALLOWED
    assert decide_connection(POLICY, CAT, "tools.example").verdict is Verdict.EGRESS_DENIED  # path rule only
    assert decide_connection(POLICY, CAT, "api.openai.com").verdict is Verdict.UNMETERED  # escape has paths
    assert (
        decide_connection(compile_policy(parse_policy("")), CAT, "github.com").verdict
        is Verdict.EGRESS_DENIED
    )


def test_no_egress_section_means_llm_providers_only() -> None:
    default = compile_policy(parse("").egress)
    assert decide(default, CAT, "GET", "github.com", "/").verdict is Verdict.EGRESS_DENIED
    assert decide(default, CAT, "POST", "api.openai.com", "/v1/chat/completions").verdict is Verdict.METERED


def test_presets_are_host_names() -> None:
    assert all(
        host_matches(h, h.removeprefix("*.")) or h.startswith("*.")
        for hosts in PRESETS.values()
        for h in hosts
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("allow:\n  - hosts: [a.com]\n    pathz: [/x]\n", "<policy>: allow.0.pathz: unknown key"),
        ("presets: [nope]\n", "<policy>: presets.0: Input should be"),
        ("allow:\n  - hosts: []\n", "<policy>: allow.0.hosts: List should have at least 1 item"),
        ("allow:\n  - hosts: ['a b']\n", "<policy>: allow.0.hosts.0: invalid host 'a b'"),
        ("allow:\n  - hosts: [a.com]\n    paths: [x]\n", "<policy>: allow.0.paths.0: invalid path prefix 'x'"),
        ("allow:\n  - hosts: [a.com]\n    methods: [FETCH]\n", "<policy>: allow.0.methods.0: invalid method 'FETCH'"),
        ("allow:\n  - hosts: ['*']\n    unmetered: allow\n", "<policy>: allow.0: unmetered: allow needs the hosts named"),
        ("- a\n", "<policy>: expected a mapping of egress policy at the top level"),
    ],
)  # fmt: skip
def test_bad_policy_is_one_line_naming_the_key(text: str, error: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_policy(text)
    assert str(caught.value).startswith(error) and "\n" not in str(caught.value)


def test_settings_egress_unknown_key_names_its_path() -> None:
    with pytest.raises(SettingsError, match=r"^<settings>: egress\.allowed: unknown key$"):
        parse("egress:\n  allowed: []\n")
