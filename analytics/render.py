"""Report output: rich tables, JSON, CSV, Parquet, and terminal charts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table as RichTable

from analytics.errors import ReportError
from analytics.table import Report, Series, Table

_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64()}


def _cell(value: str | int | float | None, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if unit == "usd":
            return f"${value:,.4f}"
        return f"{value:,.0f}" if unit == "tokens" else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def rich_table(table: Table, title: str) -> RichTable:
    out = RichTable(title=title)
    for column in table.columns:
        numeric = column.kind != "str"
        out.add_column(column.name, justify="right" if numeric else "left")
    # budgets mix units per row: a row's own unit column, when present, decides how amounts read
    unit_at = next((i for i, c in enumerate(table.columns) if c.name == "unit"), None)
    for row in table.rows:
        row_unit = str(row[unit_at]) if unit_at is not None else ""
        out.add_row(
            *(_cell(value, column.unit or row_unit) for value, column in zip(row, table.columns, strict=True))
        )
    return out


def print_tables(report: Report, console: Console) -> None:
    tables = (report.main, *report.extra)
    for table in tables:
        if table is not report.main and not table.rows:
            continue
        title = table.name.replace("_", " ")
        if not table.rows:
            console.print(f"{title}: no rows")
            continue
        console.print(rich_table(table, title))


def to_json(report: Report) -> str:
    document: dict[str, object] = {"report": report.main.name, "rows": report.main.records()}
    for table in report.extra:
        document[table.name] = table.records()
    return json.dumps(document, indent=2) + "\n"


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in table.columns])
    writer.writerows(["" if v is None else v for v in row] for row in table.rows)
    return buffer.getvalue()


def arrow_table(table: Table) -> pa.Table:
    schema = pa.schema([(c.name, _ARROW_TYPES[c.kind]) for c in table.columns])
    columns = [[row[i] for row in table.rows] for i in range(len(table.columns))]
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema
    )


def write_parquet(table: Table, path: Path) -> None:
    try:
        pq.write_table(arrow_table(table), path)
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from e


_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, peak: float, width: int) -> str:
    """A horizontal bar ``value / peak`` of ``width`` cells long, in eighth-cell steps."""
    if peak <= 0 or value <= 0:
        return ""
    eighths = round(value / peak * width * 8)
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def chart(series: Series, width: int = 60) -> str:
    """``series`` as a horizontal bar chart in terminal characters, one bar per time bucket."""
    title = f"{series.measure} per {series.bucket} (UTC)"
    if not series.points:
        return f"{title}: no data"
    peak = max(value for _, value in series.points)
    money = series.measure == "cost_usd"
    lines = [title]
    for label, value in series.points:
        amount = f"${value:,.4f}" if money else f"{value:,.0f}"
        lines.append(f"{label:>17} │{bar(value, peak, width):<{width}} {amount}")
    return "\n".join(lines)
