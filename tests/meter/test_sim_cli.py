"""``bbnet sim`` option handling (the serving itself is tested through start_sim)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bbnet.clikit import CliError, parse_listen
from tests.conftest import run_bbnet


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8900", ("127.0.0.1", 8900)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8900", ":8900", "host:", "host:port", "host:70000"])
def test_parse_listen_refuses(listen: str) -> None:
    with pytest.raises(CliError, match="expected HOST:PORT"):
        parse_listen(listen)


def test_bad_listen_is_a_one_line_usage_error() -> None:
    result = run_bbnet("sim", "--listen", "nowhere")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "bbnet sim: error: invalid address 'nowhere': expected HOST:PORT with a port 0-65535"
    )


def test_bad_replay_file_is_one_line_and_nothing_serves(tmp_path: Path) -> None:
    har = tmp_path / ("a-long-folder-name-" * 6) / "broken.har"
    har.parent.mkdir()
    har.write_text("{")
    result = run_bbnet("sim", "--listen", "127.0.0.1:0", "--replay", str(har), env={"COLUMNS": "40"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bbnet sim: error: ") and "not a HAR file" in lines[0]
    assert "serving" not in result.stderr


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_bbnet("sim", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"bbnet sim: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
