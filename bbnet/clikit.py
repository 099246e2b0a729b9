"""What every `bbnet` command shares: the --db/--settings/--json options, errors, output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

# typer carries its own copy of click: its errors and contexts are that copy's, not click's
from typer._click import exceptions as click_errors
from typer._click.globals import get_current_context

from bbnet.ledger import Ledger

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="BBNET_DB",
        help="Ledger: a file, or a postgresql:// URL [default: settings' ledger.url, else /var/lib/bbnet/ledger.db]",
        show_default=False,
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


def print_error(message: object, command: str | None = None) -> None:
    """The one shape of a user-facing error: ``bbnet <cmd>: error: …``, one line on stderr.

    ``command`` defaults to the path of the command running now (``bbnet`` outside one)."""
    if command is None:
        ctx = get_current_context(silent=True)
        command = ctx.command_path if ctx is not None else "bbnet"
    line = " ".join(str(message).split())  # never a wrapped or multi-line message
    sys.stderr.write(f"{command}: error: {line}\n")
    sys.stderr.flush()


def exit_with_error(message: object) -> NoReturn:
    """Print the error and exit 2 from inside a command (works under any Typer runner)."""
    print_error(message)
    raise typer.Exit(2)


def command_path(root: object, args: Sequence[str], prog: str = "bbnet") -> str:
    """The subcommand path ``args`` names under ``root`` (``bbnet budget set``), options skipped.

    Used for errors raised after click has left the command's context."""
    words, here = [prog], root
    for arg in args:
        commands = getattr(here, "commands", None)  # a group's subcommands by name
        if arg.startswith("-") or not isinstance(commands, dict):
            continue
        if arg not in commands:
            break
        words.append(arg)
        here = commands[arg]
    return " ".join(words)


def run_app(app: typer.Typer, args: list[str], user_errors: tuple[type[Exception], ...]) -> int:
    """Run ``app`` on ``args`` and return the exit code. Every user error, click's usage errors
    included, is one line on stderr (``bbnet <cmd>: error: …``) and exit code 2, whatever the
    terminal width: never a box, never a wrapped line."""
    root = typer.main.get_command(app)
    try:
        result = root.main(args, prog_name="bbnet", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help() if e.ctx else "")
        return 2
    except click_errors.UsageError as e:
        where = e.ctx.command_path if e.ctx else command_path(root, args)
        print_error(f"{e.format_message()} (see {where} --help)", command=where)
        return 2
    except click_errors.ClickException as e:
        print_error(e.format_message(), command=command_path(root, args))
        return e.exit_code
    except typer.Abort:
        print_error("aborted", command=command_path(root, args))
        return 1
    except user_errors as e:
        print_error(e, command=command_path(root, args))
        return 2
    return result if isinstance(result, int) else 0


def ledger_target(db: str | None, settings: str | None = None) -> str:
    """The ledger a command opens: ``--db``/``BBNET_DB``, else the settings' ``ledger.url``, else
    the default file. The settings file is read only when neither was given."""
    if db:
        return db
    from bbnet import settings as settings_mod  # pydantic: only when the settings decide

    return settings_mod.load(settings).ledger_target(None)


def open_ledger(db: str | None, *, create: bool = True, settings: str | None = None) -> Ledger:
    """The ledger a command opens (:func:`ledger_target`); ``settings``: the command's --settings file."""
    return Ledger.open(ledger_target(db, settings), create=create)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port); a clear error otherwise."""
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise CliError(f"invalid address {listen!r}: expected HOST:PORT with a port 0-65535")
    return host, int(port_text)
