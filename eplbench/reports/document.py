"""The report as a list of blocks, rendered once as Markdown and once as HTML, so that the
two say the same thing. Inline text may hold `code` and **bold**."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Paragraph:
    text: str
    note: bool = False  # a footnote-like remark under a table (smaller in HTML)


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    # per row: "" or "invalid" (shaded in HTML); the first column is left-aligned
    row_kinds: list[str] = field(default_factory=list)


@dataclass
class Figure:
    stem: str
    title: str
    text: str


def to_markdown(blocks) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.header) + " |",
                     "|" + " --- |" * len(block.header)]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Figure):
            parts.append(f"## {block.title}\n\n{block.text}\n\n![{block.title}]({block.stem}.png)")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;
  max-width:1100px;margin:1.5em auto;padding:0 1em;line-height:1.4}
h1{margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:13px;margin:.4em 0}
th{background:#f2f4f7;font-weight:600;text-align:right;vertical-align:bottom}
td,th{border:1px solid #d5d9e0;padding:3px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left;white-space:normal;max-width:22em;
  overflow-wrap:anywhere}
tbody tr:nth-child(even){background:#fafbfc}
tr.invalid td{background:#fdecec;color:#7a2222}
p.note{font-size:12.5px;color:#555;margin:.3em 0}
ul{font-size:14px;padding-left:1.4em} li{margin:.15em 0}
code{background:#f2f4f7;padding:0 3px;border-radius:3px;font-size:92%}
nav{font-size:14px;color:#555} nav a{margin-right:1em}
figure{margin:.5em 0 1.5em} img{max-width:100%;height:auto;border:1px solid #eee}
""".strip()

# the page counts its images once loaded (data-images-loaded), for tests and for a quick look
COUNT_LOADED = ("<script>window.addEventListener('load', () => {"
                "const done = [...document.images].filter(i => i.complete && i.naturalWidth > 0);"
                "document.body.dataset.imagesLoaded = done.length;});</script>")


def to_html(blocks, folder: Path, title: str) -> str:
    """A self-contained page: figures inlined as PNG data from `folder`."""
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            body.append(f"<h{block.level}{anchor}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            kind = ' class="note"' if block.note else ""
            body.append(f"<p{kind}>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items)
                        + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(cell)}</th>" for cell in block.header)
            kinds = block.row_kinds or [""] * len(block.rows)
            rows = "".join((f'<tr class="{kind}">' if kind else "<tr>")
                           + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>"
                           for row, kind in zip(block.rows, kinds))
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode((folder / f"{block.stem}.png").read_bytes()).decode()
            body.append(f'<h2 id="{block.stem}">{_inline(block.title)}</h2>'
                        f"<p>{_inline(block.text)}</p><figure>"
                        f'<img alt="{html.escape(block.title)}" '
                        f'src="data:image/png;base64,{data}"></figure>')
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style>{COUNT_LOADED}"
            "</head><body>" + "\n".join(body) + "</body></html>\n")
