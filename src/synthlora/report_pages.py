"""Self-contained HTML pages for ``snakemake --report``.

Snakemake's report viewer shows images, HTML and PDF inline and offers everything else (TSV,
Markdown) only as a download, so each table the report lists gets an HTML twin written beside
it. Standard library only (html.escape, csv): the light rules that write them stay light, and
nothing is fetched from a network when the page is opened.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import mimetypes
from pathlib import Path
from typing import Any, Sequence

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px;
       line-height: 1.45; color: #222; margin: 1.2em; max-width: 72em; }
h1 { font-size: 1.5em; margin: 0 0 .6em; } h2 { font-size: 1.2em; margin: 1.4em 0 .5em; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f0f3f6; position: sticky; top: 0; }
tr:nth-child(even) td { background: #f8f9fa; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { background: #f0f3f6; padding: 0 3px; border-radius: 3px; font-size: 90%; }
.note { border-left: 4px solid #d4a017; background: #fff8e1; padding: .5em .8em; }
.muted { color: #777; font-style: italic; }
figure { margin: .5em 0 1em; } figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #555; font-size: 12px; }
"""


def is_number(value: Any) -> bool:
    """Whether a cell reads as a number (right-aligned, so digits line up)."""
    try:
        float(str(value))
    except ValueError:
        return False
    return str(value).strip() != ""


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A ``<table>`` with every cell escaped; a column whose filled cells are all numbers is right-aligned."""
    numeric = [any(is_number(r[i]) for r in rows if i < len(r)) and
               all(is_number(r[i]) or str(r[i]) == "" for r in rows if i < len(r)) for i in range(len(header))]

    def cls(i):
        return ' class="num"' if i < len(numeric) and numeric[i] else ""

    head = "".join(f"<th{cls(i)}>{html.escape(str(h))}</th>" for i, h in enumerate(header))
    body = ["<tr>" + "".join(f"<td{cls(i)}>{html.escape(str(v))}</td>" for i, v in enumerate(r)) + "</tr>"
            for r in rows]
    if not rows:
        body = [f'<tr><td class="muted" colspan="{max(1, len(header))}">no rows</td></tr>']
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def html_page(title: str, body: str) -> str:
    """A complete page with its own stylesheet (the report shows it in an iframe)."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def tsv_page(tsv_text: str, title: str, notes: Sequence[str] = ()) -> str:
    """A TSV (header line, then rows) as a titled HTML page; an empty TSV gives an empty table.
    ``notes``: lines shown above the table (a summary; one starting with WARNING is highlighted)."""
    lines = list(csv.reader(io.StringIO(tsv_text), delimiter="\t"))
    header, rows = (lines[0], lines[1:]) if lines else ([], [])
    note = f'<p class="muted">{len(rows)} rows</p>' if rows else ""
    summary = "\n".join(f'<p class="note">{html.escape(n.strip())}</p>' if n.strip().startswith("WARNING")
                        else f"<p>{html.escape(n.strip())}</p>" for n in notes)
    return html_page(title, f"<h1>{html.escape(title)}</h1>\n{summary}\n{note}\n{html_table(header, rows)}")


def data_uri(path: str | Path) -> str:
    """A file as a ``data:`` URI, so a page embeds its pictures instead of linking them."""
    mime = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
