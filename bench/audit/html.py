"""The audit report as one self-contained HTML file: inline CSS, thumbnails as base64 JPEGs.

Nothing is linked: the file can be mailed or attached to a CI run. Duplicate
pairs are shown side by side (the first :data:`THUMB_PAIRS`), so a reviewer sees
at a glance whether a "near-duplicate" is one.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from bench.audit.tables import MARK, card_tables, headline

THUMB_PAIRS = 40
THUMB_SIDE = 120

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0 1em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.ok{background:#d9f2d9;font-weight:bold}.warn{background:#fff0c2;font-weight:bold}
.fail{background:#f8c9c9;font-weight:bold}
.pairs{display:flex;flex-wrap:wrap;gap:12px}
.pair{border:1px solid #ccc;padding:6px;font-size:.75em;width:260px}
.pair img{width:120px;height:120px;object-fit:contain;background:#eee}
.small{color:#666;font-size:.85em}
"""


def thumbnail(path: str | Path, side: int = THUMB_SIDE) -> str:
    """A ``data:`` URI of a small JPEG of the image ('' when it cannot be read)."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (side, side))
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except OSError:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell(value: Any) -> str:
    text = str(value)
    cls = {v: k for k, v in MARK.items()}.get(text)
    return f'<td class="{cls}">{html.escape(text)}</td>' if cls else f"<td>{html.escape(text)}</td>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pairs(finding: dict[str, Any]) -> str:
    cards = []
    for p in finding["pairs"][:THUMB_PAIRS]:
        imgs = "".join(
            f'<img src="{thumbnail(p[k])}" alt="{html.escape(p[r])}">'
            for k, r in (("path_a", "rel_a"), ("path_b", "rel_b"))
        )
        cards.append(
            f'<div class="pair">{imgs}<br><b>{html.escape(p["kind"])}</b>, {p["method"]} '
            f"(distance {p['distance']:.3g})<br>{html.escape(p['rel_a'])} ({html.escape(p['class_a'])})"
            f"<br>{html.escape(p['rel_b'])} ({html.escape(p['class_b'])})</div>"
        )
    more = finding["n_pairs"] - len(cards)
    tail = f'<p class="small">{more} more pair(s) in the JSON report.</p>' if more > 0 else ""
    return f'<div class="pairs">{"".join(cards)}</div>{tail}'


def to_html(report: dict[str, Any]) -> str:
    """The whole report as one HTML document."""
    name = html.escape(report["dataset"]["name"])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Audit: {name}</title><style>{CSS}</style></head><body>",
        f"<h1>Audit: {name}</h1>",
    ]
    parts += [f"<p>{html.escape(line)}</p>" for line in headline(report)]
    for title, (header, rows) in card_tables(report).items():
        if title.startswith("Duplicate pairs"):
            continue
        parts += [f"<h2>{html.escape(title)}</h2>", _table(header, rows)]
    dup = next(f for f in report["findings"] if f["id"] == "duplicates")
    if dup["pairs"]:
        parts += [f"<h2>Duplicate pairs ({dup['n_pairs']})</h2>", _pairs(dup)]
    if report["notes"]:
        parts += ["<h2>Notes</h2><ul>"]
        parts += [f"<li>{html.escape(n)}</li>" for n in report["notes"]]
        parts += ["</ul>"]
    parts += [f'<p class="small">{html.escape(report["tool"])}</p></body></html>']
    return "\n".join(parts)
