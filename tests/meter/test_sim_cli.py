"""``bbnet sim`` option handling (the serving itself is tested through start_sim)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bbnet.clikit import CliError, parse_listen
from meter.sim_cli import mount
from tests.conftest import run_bbnet


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    mount(root)

    @root.command("version")  # a second command, so typer keeps "sim" as a subcommand
    def version() -> None:
        typer.echo("test")

    return root


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
        == "bbnet: error: invalid address 'nowhere': expected HOST:PORT with a port 0-65535"
    )


def test_bad_replay_file_is_a_usage_error(app: typer.Typer, tmp_path: Path) -> None:
    har = tmp_path / "broken.har"
    har.write_text("{")
    result = CliRunner().invoke(app, ["sim", "--listen", "127.0.0.1:0", "--replay", str(har)])
    assert result.exit_code == 2
    assert "not a HAR file" in result.output


def test_port_in_use_is_reported(app: typer.Typer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["sim", "--listen", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
