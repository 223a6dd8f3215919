"""A standalone HTML report: one self-contained file (inline CSS, figures embedded).

``report_page(records)`` builds the page of ``leukobench report --format html``:
Table 1 with CIs and the unit they are computed over (LEAKY rows marked),
Table 2, per-class and confusion tables, the figures (estimates, ROC and PR
curves, confusion matrices, fine-tuning curves) as embedded SVG, and each
run's provenance. ``tables_page(title, tables)`` wraps any report tables (the
leaderboard). The page needs no network, no script, and reads on a phone and
on paper (print styles).
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.records import RunRecord
from bench.render import Table

CSS = """
:root { --fg:#1b1b1b; --muted:#5b5b5b; --line:#d0d0d0; --leaky:#b8420a; --bg-leaky:#fdf0e8;
        --accent:#0072B2; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1rem; max-width: 74rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 .4rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 2px solid var(--accent); padding-bottom: .2rem; }
h3 { font-size: 1rem; margin-top: 1.4rem; }
.meta, caption, .note, figcaption { color: var(--muted); font-size: .85rem; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .5rem 0 1rem; }
table { border-collapse: collapse; min-width: 100%; font-size: .85rem; }
caption { text-align: left; caption-side: top; padding: .3rem 0; }
th, td { padding: .3rem .55rem; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; white-space: nowrap; }
th { background: #f3f6f9; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.group td { background: #fafafa; font-weight: 600; }
tr.leaky td { background: var(--bg-leaky); color: var(--leaky); }
.badge { display: inline-block; padding: 0 .35rem; border-radius: .25rem; font-size: .72rem;
         font-weight: 700; color: #fff; background: var(--leaky); margin-left: .3rem; }
.warn { border-left: 4px solid var(--leaky); background: var(--bg-leaky); padding: .5rem .8rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); gap: 1rem; }
figure { margin: 0; break-inside: avoid; page-break-inside: avoid; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figure.wide { grid-column: 1 / -1; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; font-size: .85rem; }
dl.prov dt { color: var(--muted); } dl.prov dd { margin: 0; word-break: break-all; }
@media (max-width: 40rem) { body { font-size: 14px; padding: .6rem; } th, td { padding: .25rem .4rem; } }
@media print { body { max-width: none; font-size: 10pt; } .scroll { overflow: visible; }
  h2 { break-after: avoid; } table { font-size: 8pt; } th, td { white-space: normal; }
  .figures { display: block; } figure { margin: 0 0 1rem; } a { color: inherit; } }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _is_leaky(table: Table, i: int) -> bool:
    style = (table.styles or [None] * len(table.rows))[i] or ""
    data = table.data[i] if i < len(table.data) else {}
    return "red" in style or bool(isinstance(data, dict) and data.get("leaky"))


def table_html(table: Table) -> str:
    """One report table as an HTML table: numbers right-aligned, LEAKY rows marked."""
    numeric = [
        all((row[j][:1].isdigit() or row[j][:1] in "-<+") for row in table.rows if row[j])
        and any(row[j] for row in table.rows)
        for j in range(len(table.headers))
    ]
    out = [f'<div class="scroll"><table id="{_e(table.key)}">']
    caption = table.title + (f". {table.caption}" if table.caption else "")
    out.append(f"<caption>{_e(caption)}</caption>")
    out.append(
        "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in table.headers) + "</tr></thead>"
    )
    out.append("<tbody>")
    previous = None
    for i, row in enumerate(table.rows):
        group = table.groups[i] if table.groups else None
        if group and group != previous:
            out.append(f'<tr class="group"><td colspan="{len(row)}">{_e(group)}</td></tr>')
            previous = group
        leaky = _is_leaky(table, i)
        cells = []
        for j, value in enumerate(row):
            text = _e(value)
            if j == 0 and leaky and "LEAKY" not in str(value):
                text += '<span class="badge">LEAKY</span>'
            elif j == 0 and leaky:
                text = text.replace("[LEAKY]", '<span class="badge">LEAKY</span>')
            cls = ' class="num"' if j < len(numeric) and numeric[j] and j > 0 else ""
            cells.append(f"<td{cls}>{text}</td>")
        tr = '<tr class="leaky">' if leaky else "<tr>"
        out.append(tr + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    out += [f'<p class="note">{_e(n)}</p>' for n in table.footnotes]
    return "\n".join(out)


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            '<meta name="generator" content="LeukoBench">',
            f"<style>{CSS}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


def tables_page(title: str, tables: Sequence[Table], intro: str = "") -> str:
    """A standalone page of report tables (e.g. the leaderboard)."""
    body = [f"<h1>{_e(title)}</h1>"]
    if intro:
        body.append(f'<p class="meta">{_e(intro)}</p>')
    body += [table_html(t) for t in tables]
    return _page(title, body)


def _provenance(record: RunRecord) -> str:
    env = record.environment
    ds = record.dataset
    packages = env.get("packages") or {}
    rows = [
        ("run id", record.run_id),
        ("status", record.status),
        ("started / finished", f"{record.started} / {record.finished}"),
        ("suite", f"{record.suite.get('name')} ({record.suite.get('path') or 'built in code'})"),
        ("suite sha256", record.suite.get("sha256")),
        ("config digest", record.suite.get("config_sha256")),
        ("dataset", f"{ds.get('name')} ({ds.get('plugin')}, {ds.get('path') or '-'})"),
        ("dataset fingerprint", ds.get("fingerprint")),
        (
            "images / groups",
            f"{ds.get('n_images')} images, {ds.get('n_groups')} independent groups",
        ),
        ("classes", ", ".join(f"{k}: {v}" for k, v in (ds.get("class_counts") or {}).items())),
        ("positive class", ds.get("positive")),
        ("device", f"{env.get('device')} {env.get('gpu') or ''} ({env.get('cpu')})".strip()),
        ("python / platform", f"{env.get('python')} / {env.get('platform')}"),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items())),
        ("git revision", record.git_revision or "-"),
        ("timings (s)", ", ".join(f"{k} {v}" for k, v in record.timings.items())),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="prov">{items}</dl>'


def _figures(record: RunRecord) -> str:
    from bench.figures import figure_set

    with tempfile.TemporaryDirectory(prefix="leukobench-html-") as tmp:
        figures = figure_set(record, Path(tmp), fmt="svg")
        parts = []
        for f in figures:
            data = base64.b64encode(f.path.read_bytes()).decode("ascii")
            wide = ' class="wide"' if f.kind == "estimates" else ""
            parts.append(
                f'<figure{wide} data-kind="{f.kind}"><img alt="{_e(f.caption)}" '
                f'src="data:image/svg+xml;base64,{data}"><figcaption>{_e(f.caption)}'
                "</figcaption></figure>"
            )
    return '<div class="figures">' + "\n".join(parts) + "</div>" if parts else ""


def _confusions(record: RunRecord) -> list[str]:
    from bench.report import confusion, methods

    out = []
    for m in methods(record):
        cm = sum(confusion(c) for c in m.cells)
        classes = list(m.cells[0].classes)
        rows = cm.sum(1).clip(min=1)
        head = "".join(f"<th>pred. {_e(c)}</th>" for c in classes)
        body = "".join(
            f"<tr><th>true {_e(classes[i])}</th>"
            + "".join(
                f'<td class="num">{cm[i, j]} ({100 * cm[i, j] / rows[i]:.1f}%)</td>'
                for j in range(len(classes))
            )
            + "</tr>"
            for i in range(len(classes))
        )
        leaky = ' class="leaky"' if m.leaky else ""
        out.append(
            f'<div class="scroll"><table{leaky}><caption>{_e(m.name)}, {_e(m.split_text)}: '
            f"counts (row %)</caption><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>"
        )
    return out


def report_page(
    records: Sequence[RunRecord], extra: Sequence[str] = (), figures: bool = True
) -> str:
    """The standalone report of one or more records."""
    from bench.report import table1, table2

    names = ", ".join(str(r.suite.get("name") or r.run_id) for r in records)
    title = f"LeukoBench report: {names}"
    body = [f"<h1>{_e(title)}</h1>"]
    body.append(
        '<p class="meta">Intervals are 95% and computed over independent units (source images, '
        "or patients where the dataset names them), as each table's caption says.</p>"
    )
    if any(c.leaky for r in records for c in r.cells):
        body.append(
            '<p class="warn"><strong>LEAKY rows</strong> come from the paper\'s order (augment, '
            "then split): copies of one image sit on both sides of a split, so their scores are "
            "inflated and comparable only with other leaky rows.</p>"
        )
    for r in records:
        body.append(f"<h2>{_e(r.suite.get('name') or r.run_id)}: {_e(r.dataset_name)}</h2>")
        if r.dataset.get("synthetic"):
            body.append('<p class="warn">SYNTHETIC images: for smoke tests, never for claims.</p>')
        body.append("<h3>Table 1</h3>")
        body += [table_html(t) for t in table1(r, extra=tuple(extra))]
        body.append("<h3>Confusion matrices</h3>")
        body += _confusions(r)
        if figures:
            body.append("<h3>Figures</h3>")
            body.append(_figures(r))
        body.append("<h3>Provenance</h3>")
        body.append(_provenance(r))
    body.append("<h2>Table 2: beside the literature</h2>")
    body.append(table_html(table2(list(records))))
    return _page(title, body)
