"""Render report tables: rich in a terminal; Markdown, CSV, LaTeX, HTML (tabulate) or JSON."""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from typing import Any

from bench.errors import UserError

FORMATS = ("rich", "md", "csv", "latex", "html", "json")


@dataclass
class Table:
    """One report table: display strings plus the raw values behind them."""

    key: str  # stable id: "table1", "table1-per-class", "table2", "leaderboard", ...
    title: str
    headers: list[str]
    rows: list[list[str]]
    data: list[dict[str, Any]] = field(default_factory=list)  # raw values (json output)
    caption: str = ""
    footnotes: list[str] = field(default_factory=list)
    groups: list[str] | None = None  # group label per row (e.g. "Model 1"); sections
    styles: list[str | None] | None = None  # rich style per row (e.g. leaky rows in red)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "caption": self.caption,
            "headers": self.headers,
            "rows": self.rows,
            "data": self.data,
            "footnotes": self.footnotes,
        }


def _grouped_rows(table: Table) -> tuple[list[str], list[list[str]]]:
    """Rows with the group label as first column, shown once per group (as in the paper)."""
    if not table.groups:
        return table.headers, table.rows
    rows, previous = [], None
    for group, row in zip(table.groups, table.rows, strict=True):
        rows.append([group if group != previous else "", *row])
        previous = group
    return ["Model", *table.headers], rows


def _numeric_column(table: Table, j: int) -> bool:
    """True when every cell of column ``j`` is a number-like string ("97.3 [95.1, 98.6]", "-")."""
    cells = [row[j] for row in table.rows if j < len(row)]
    return bool(cells) and all(c[:1].isdigit() or c[:1] in "-<+" for c in cells if c)


def render_rich(tables: list[Table], console: Any = None) -> None:
    """Print tables to a terminal (or any rich Console)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = console or Console()
    for table in tables:
        rt = RichTable(title=table.title, caption=table.caption or None, caption_justify="left")
        headers = (["Model"] if table.groups else []) + table.headers
        offset = 1 if table.groups else 0
        budget = max(4, (console.width - 3 * len(headers) - 1) // max(1, len(headers)))
        for i, name in enumerate(headers):
            numeric = i >= offset and _numeric_column(table, i - offset)
            cells = [r[i - offset] for r in table.rows] if i >= offset else table.groups or []
            longest = max((len(c) for c in cells), default=6)
            # narrow terminals: numbers wrap at the space before "[CI]", text keeps a minimum
            rt.add_column(
                name,
                justify="right" if numeric else "left",
                overflow="fold",
                min_width=min(longest, 5 if numeric else 12, budget),
            )
        previous = None
        for i, row in enumerate(table.rows):
            style = table.styles[i] if table.styles else None
            if table.groups:
                group = table.groups[i]
                if previous is not None and group != previous:
                    rt.add_section()
                cells = [group if group != previous else "", *row]
                previous = group
            else:
                cells = list(row)
            rt.add_row(*cells, style=style)
        console.print(rt)
        for note in table.footnotes:
            console.print(note, style="yellow" if "LEAKY" in note else None, highlight=False)
        console.print()


def _markdown(table: Table) -> str:
    from tabulate import tabulate

    headers, rows = _grouped_rows(table)
    parts = [f"### {table.title}", ""]
    if table.caption:
        parts += [table.caption, ""]
    parts.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    if table.footnotes:
        parts.append("")
        parts += [f"{note}  " for note in table.footnotes]
    return "\n".join(parts) + "\n"


def _latex(table: Table) -> str:
    from tabulate import tabulate

    headers, rows = _grouped_rows(table)
    body = tabulate(rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
    body = body.replace("≈", r"$\approx$")  # approximate classifiers' labels; pdflatex-safe
    lines = [f"% {table.title}"]
    if table.caption:
        lines.append(f"% {table.caption}")
    lines.append(body)
    lines += [f"% {note}" for note in table.footnotes]
    return "\n".join(lines) + "\n"


def _html(table: Table) -> str:
    from tabulate import tabulate

    headers, rows = _grouped_rows(table)
    body = tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True)
    caption = f"<caption>{html.escape(table.title)}. {html.escape(table.caption)}</caption>"
    body = body.replace("<table>", f"<table>\n{caption}", 1)
    notes = "".join(f"<p>{html.escape(n)}</p>\n" for n in table.footnotes)
    return body + "\n" + notes


def _csv(table: Table) -> str:
    headers, rows = _grouped_rows(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f"# {table.title}"])
    writer.writerow(headers)
    writer.writerows(rows)
    return buf.getvalue()


def _rich_text(tables: list[Table], width: int = 160) -> str:
    from rich.console import Console

    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    render_rich(tables, console)
    return console.export_text()


def render_text(tables: list[Table], fmt: str) -> str:
    """All ``tables`` as one string in ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        from bench.strict_json import dumps

        return dumps({"tables": [t.as_dict() for t in tables]}, indent=1) + "\n"
    if fmt == "rich":
        return _rich_text(tables)
    one = {"md": _markdown, "csv": _csv, "latex": _latex, "html": _html}[fmt]
    return "\n".join(one(t) for t in tables)
