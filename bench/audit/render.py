"""Render an audit report (the dict of :func:`bench.audit.pipeline.run_audit`) as text.

``md`` and ``rich`` show the same content: the report card, the findings with
their verdicts, the most predictive acquisition properties, the source checks,
the leakage delta and the listed duplicate pairs. ``json`` is the dict itself.
HTML lives in :mod:`bench.audit.html`.
"""

from __future__ import annotations

import io
import json
from typing import Any

from tabulate import tabulate

from bench.audit.tables import card_tables, headline

FORMATS = ("rich", "md", "json", "html")


def to_json(report: dict[str, Any]) -> str:
    """The report as indented JSON (ends with a newline)."""
    return json.dumps(report, indent=2, default=str) + "\n"


def to_markdown(report: dict[str, Any]) -> str:
    """GitHub-flavoured Markdown."""
    out = [f"## Audit: {report['dataset']['name']}", ""]
    out += [f"{line}  " for line in headline(report)] + [""]
    for title, (header, rows) in card_tables(report).items():
        out += [f"**{title}**", "", tabulate(rows, header, tablefmt="github"), ""]
    if report["notes"]:
        out += ["**Notes**", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(out)


def to_rich(report: dict[str, Any], width: int | None = None) -> str:
    """Coloured terminal text (rendered to a string)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    style = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width or 160)
    console.rule(f"Audit: {report['dataset']['name']}")
    for line in headline(report):
        console.print(escape(line), highlight=False)
    for title, (header, rows) in card_tables(report).items():
        table = Table(title=title, title_justify="left", show_lines=title == "Findings")
        for h in header:
            table.add_column(h, overflow="fold")
        for row in rows:
            cells = [str(c) for c in row]
            table.add_row(*[f"[{style[c]}]{c}[/]" if c in style else escape(c) for c in cells])
        console.print(table)
    for n in report["notes"]:
        console.print(escape(f"note: {n}"), highlight=False)
    return buf.getvalue()


def render(report: dict[str, Any], fmt: str) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return to_json(report)
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        from bench.audit.html import to_html

        return to_html(report)
    return to_rich(report)
