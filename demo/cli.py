"""``bbnet demo``: see bbnet work end to end on this machine. The lead's ``bbnet.cli`` calls
:func:`mount`; the demo's modules are imported only when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave it running for exploring (the dashboard); Ctrl-C stops it")
    ] = False,
    no_pause: Annotated[bool, typer.Option("--no-pause", help="Do not wait for Enter between acts")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout (narration goes to stderr)")
    ] = False,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            help="Keep the demo's ledger, settings, CA and logs here [default: a temporary directory, removed]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Two bottles, real SDK agents, a budget cutoff in the kernel, a restore, reports (root; offline).

    Cleans up after itself on success, failure and Ctrl-C. Exit status: 0 everything shown,
    1 something was not shown, 2 could not run, 130 interrupted.
    """
    import sys

    from demo.run import Options, run_demo

    options = Options(keep=keep, pause=not no_pause and sys.stdin.isatty(), json_out=json_, workdir=workdir)
    code = run_demo(options)
    if code:
        raise typer.Exit(code)


def mount(root: typer.Typer) -> None:
    """Add ``demo`` to the root ``bbnet`` app."""
    root.command("demo")(demo)
