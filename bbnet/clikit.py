"""What every `bbnet` command shares: the --db/--settings/--json options, errors, output."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from bbnet.ledger import Ledger, default_path

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="BBNET_DB", help="Ledger file [default: /var/lib/bbnet/ledger.db]", show_default=False
    ),
]
SettingsOpt = Annotated[
    str | None,
    typer.Option(
        "--settings",
        envvar="BBNET_SETTINGS",
        help="Settings file [default: /etc/bbnet/settings.yml]",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
UpstreamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--upstream-map", help="HOST=URL: send HOST's traffic to URL instead (tests, demo); '*' = any"
    ),
]
ConfdirOpt = Annotated[
    str | None,
    typer.Option(
        "--confdir", envvar="BBNET_CONFDIR", help="mitmproxy confdir holding the CA", show_default=False
    ),
]

# Piped output is not cut to 80 columns: scripts and logs get whole values.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 400)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def print_error(message: object) -> None:
    """The one shape of a user-facing error: a single line on stderr."""
    err_console.print(f"bbnet: error: {message}", markup=False, highlight=False, soft_wrap=True)


def exit_with_error(message: object) -> NoReturn:
    """Print the error and exit 2 from inside a command (works under any Typer runner)."""
    print_error(message)
    raise typer.Exit(2)


def open_ledger(db: str | None, *, create: bool = True) -> Ledger:
    return Ledger.open(db or default_path(), create=create)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); a clear error otherwise."""
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise CliError(f"invalid address {listen!r}: expected HOST:PORT with a port 0-65535")
    return host, int(port_text)
