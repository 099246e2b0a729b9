"""``bbnet report usage|cost|budgets|actions|refusals``: offline DuckDB reports over the ledger.

Mount with :func:`mount`. User errors (bad ``--since``, ``--by``, a missing ledger) are one line on
stderr and exit code 2. DuckDB, pyarrow and the report modules are imported inside the commands:
this module is imported by every ``bbnet`` command (``bbnet cutoff`` too), which must start fast.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from analytics.errors import ReportError
from analytics.queries import BY_KEYS, Filters, parse_by
from analytics.when import window
from bbnet.clikit import DbOpt, exit_with_error, ledger_target
from bbnet.names import NameError_, bottle_name

if TYPE_CHECKING:
    from analytics.table import Report

FORMATS = ("table", "json", "csv", "parquet")

app = typer.Typer(
    help="Reports over the ledger (DuckDB, offline): usage, cost, budgets, enforcement actions, refusals.",
    no_args_is_help=True,
)

SinceOpt = Annotated[
    str | None, typer.Option("--since", help="From WHEN: ISO date/time (UTC) or an age: 30m, 1h, 7d")
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", help="Up to WHEN (exclusive), same forms as --since")
]
ByOpt = Annotated[str, typer.Option("--by", help=f"Group by a comma list of: {', '.join(BY_KEYS)}")]
BottleOpt = Annotated[str | None, typer.Option("--bottle", help="Only this bottle")]
TopOpt = Annotated[int | None, typer.Option("--top", help="Only the N largest groups (or N latest actions)")]
FormatOpt = Annotated[
    str, typer.Option("--format", help=f"One of {', '.join(FORMATS)} (parquet needs --output)")
]
OutputOpt = Annotated[Path | None, typer.Option("--output", help="Write to FILE instead of stdout")]
ChartOpt = Annotated[bool, typer.Option("--chart", help="Also draw the report over time in the terminal")]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="BBNET_REPORT_CACHE_DIR",
        help="Where reports keep their DuckDB copy of the calls [default: next to the ledger]",
        show_default=False,
    ),
]


_WIDE = 220  # columns for tables that do not go to a terminal (a file, a pipe)


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=_WIDE)


def _check_output(fmt: str, output: Path | None) -> None:
    if fmt not in FORMATS:
        raise ReportError(f"invalid --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise ReportError("--format parquet writes a file: add --output FILE")


def _filters(since: str | None, until: str | None, bottle: str | None, now: float) -> Filters:
    start, end = window(since, until, now)
    try:
        name = bottle_name(bottle) if bottle is not None else None
    except NameError_ as e:
        raise ReportError(f"invalid --bottle: {e}") from None
    return Filters(start, end, name)


def _check_top(top: int | None) -> None:
    if top is not None and top < 1:
        raise ReportError(f"invalid --top {top}: must be 1 or more")


def _emit(report: Report, fmt: str, output: Path | None) -> None:
    """Write ``report`` as ``fmt``; the chart goes to the terminal, or stderr when data is on stdout."""
    from analytics.render import chart, print_tables, to_csv, to_json, write_parquet

    if fmt == "parquet":
        assert output is not None
        write_parquet(report.main, output)
    elif fmt == "table":
        if output is None:
            print_tables(report, _console())
        else:
            with output.open("w") as file:
                print_tables(report, Console(file=file, width=_WIDE))
    else:
        text = to_json(report) if fmt == "json" else to_csv(report.main)
        if output is None:
            sys.stdout.write(text)
        else:
            try:
                output.write_text(text)
            except OSError as e:
                raise ReportError(f"cannot write {output}: {e.strerror or e}") from None
    if fmt == "csv":
        notes = {t.name: t.rows for t in report.extra}
        if notes.get("unpriced_models"):
            names = ", ".join(f"{r[0]}/{r[1]}" for r in notes["unpriced_models"])
            print(f"unpriced models (not counted in cost_usd): {names}", file=sys.stderr)
        if notes.get("list_price_equivalents"):
            names = ", ".join(str(r[0]) for r in notes["list_price_equivalents"])
            print(f"list-price equivalents (subscriptions, not invoices): {names}", file=sys.stderr)
    if report.series is not None:
        text = chart(report.series) + "\n"
        (sys.stderr if output is None and fmt != "table" else sys.stdout).write(text)


def _run(
    kind: str,
    db: str | None,
    fmt: str,
    output: Path | None,
    since: str | None = None,
    until: str | None = None,
    bottle: str | None = None,
    by: str | None = None,
    top: int | None = None,
    draw: bool = False,
    cache_dir: Path | None = None,
) -> None:
    """Validate every option, then open the ledger, build the report and write it."""
    from analytics import reports
    from analytics.reader import open_ledger

    try:
        now = time.time()
        _check_output(fmt, output)
        _check_top(top)
        filters = _filters(since, until, bottle, now)
        keys = parse_by(by) if by is not None else ()
        with open_ledger(
            ledger_target(db), cache_dir, use_cache=kind not in ("actions", "refusals")
        ) as reader:
            if reader.note:
                typer.echo(f"bbnet: note: {reader.note}", err=True)
            if kind == "usage":
                report = reports.usage(reader, keys, filters, top, draw)
            elif kind == "cost":
                report = reports.cost(reader, keys, filters, top, draw)
            elif kind == "actions":
                report = reports.actions(reader, filters, top)
            elif kind == "refusals":
                report = reports.refusals(reader, filters)
            else:
                report = reports.budgets(reader, now, filters.bottle)
        _emit(report, fmt, output)
    except ReportError as e:
        exit_with_error(e)


@app.command("usage")
def usage(
    by: ByOpt = "bottle",
    since: SinceOpt = None,
    until: UntilOpt = None,
    bottle: BottleOpt = None,
    top: TopOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    draw: ChartOpt = False,
    db: DbOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Calls and tokens (input, cache writes/reads, output, reasoning) per group."""
    _run("usage", db, fmt, output, since, until, bottle, by, top, draw, cache_dir)


@app.command("cost")
def cost(
    by: ByOpt = "bottle",
    since: SinceOpt = None,
    until: UntilOpt = None,
    bottle: BottleOpt = None,
    top: TopOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    draw: ChartOpt = False,
    db: DbOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """USD per group (genai-prices, per call as recorded); unpriced models listed, never counted as $0."""
    _run("cost", db, fmt, output, since, until, bottle, by, top, draw, cache_dir)


@app.command("budgets")
def budgets(
    bottle: Annotated[str | None, typer.Option("--bottle", help="Only pools that limit this bottle")] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    db: DbOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Each pool now: limit, used, reserved, remaining, burn per hour (last 1 h, 24 h), projected exhaustion."""
    _run("budgets", db, fmt, output, bottle=bottle, cache_dir=cache_dir)


@app.command("actions")
def actions(
    since: SinceOpt = None,
    until: UntilOpt = None,
    bottle: BottleOpt = None,
    top: TopOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    db: DbOpt = None,
) -> None:
    """The enforcement timeline: cutoffs, freezes, kills, restores, with who asked and why."""
    _run("actions", db, fmt, output, since, until, bottle, top=top)


@app.command("refusals")
def refusals(
    since: SinceOpt = None,
    until: UntilOpt = None,
    bottle: BottleOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    db: DbOpt = None,
) -> None:
    """Requests the egress policy refused (EGRESS_DENIED, UNMETERED), per bottle, host and code."""
    _run("refusals", db, fmt, output, since, until, bottle)


def mount(root: typer.Typer) -> None:
    """Add the ``report`` command group to the root ``bbnet`` app."""
    root.add_typer(app, name="report")
