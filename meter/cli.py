"""``bbnet meter replay``: meter a HAR file or mitmproxy dump; optionally backfill the ledger.

The lead's ``bbnet/cli.py`` creates the ``bbnet meter`` group and calls :func:`mount` on it.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bbnet.clikit import console, err_console, exit_with_error
from bbnet.ledger import Ledger, LedgerError
from meter import replay as rp


class Format(StrEnum):
    jsonl = "jsonl"
    table = "table"


def _table(rows: list[dict[str, object]]) -> Table:
    table = Table(*rp.ROW_FIELDS[:1], *rp.ROW_FIELDS[2:])
    for row in rows:
        if not row["metered"]:
            table.add_row(str(row["index"]), "-", style="dim")
            continue
        table.add_row(*("" if row[f] is None else str(row[f]) for f in rp.ROW_FIELDS if f != "metered"))
    return table


def replay_command(
    file: Annotated[Path, typer.Argument(help="HAR file or mitmproxy flow dump", show_default=False)],
    fmt: Annotated[Format, typer.Option("--format", help="Output format")] = Format.jsonl,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Record the usage in this ledger (backfill); needs --bottle", show_default=False
        ),
    ] = None,
    bottle: Annotated[
        str | None, typer.Option("--bottle", help="The bottle to charge (with --db)", show_default=False)
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="The agent to charge [default: the provider name]", show_default=False),
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option("--chunk-size", help="Feed streamed answers to the tap in chunks of this many bytes"),
    ] = rp.DEFAULT_CHUNK_SIZE,
) -> None:
    """Meter every entry of FILE with the live meter's code; one JSON line per entry, in order."""
    if db is not None and bottle is None:
        exit_with_error("--db needs --bottle (the bottle the backfilled usage is charged to)")
    try:
        ledger = Ledger.open(db, create=False) if db is not None else None
    except LedgerError as exc:
        exit_with_error(exc)
    try:
        if ledger is not None and bottle is not None and ledger.get_bottle(bottle) is None:
            exit_with_error(f"no bottle named {bottle!r} in {ledger.where}")
        digest = rp.file_digest(file) if ledger is not None else ""
        rows: list[dict[str, object]] = []
        recorded = 0
        for index, call in rp.replay(file, chunk_size):
            row: dict[str, object] = call.row() if call is not None else {"index": index, "metered": False}
            if ledger is not None and bottle is not None and call is not None:
                recorded += rp.record(ledger, call, rp.entry_key(digest, index), bottle, agent)
            if fmt is Format.jsonl:
                sys.stdout.write(json.dumps(row) + "\n")
            else:
                rows.append(row)
        if fmt is Format.table:
            console.print(_table(rows))
        if ledger is not None:
            err_console.print(f"recorded {recorded} new usage rows in {ledger.where}")
    except (rp.ReplayError, LedgerError, OSError) as exc:
        exit_with_error(exc)
    finally:
        if ledger is not None:
            ledger.close()


def mount(meter_app: typer.Typer) -> None:
    """Add the ``replay`` command to the ``bbnet meter`` group."""
    meter_app.command("replay")(replay_command)
