"""`eplbench report`: a folder with report.md, a self-contained report.html (figures inlined
as PNG data) and the PNG files, from a results table and the sets' reference values."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from eplbench.atomic import replaced_atomically, write_text_atomic
from eplbench.reports import plots
from eplbench.reports.markdown import gap_table
from eplbench.reports.tables import heuristic_summary

# (file stem, title, what it shows); drawn in this order
FIGURES = [
    ("performance_profile", "Performance profile",
     "Share of instances on which a heuristic's cost (1 + gap) is within a factor tau of the "
     "best heuristic's on that instance (Dolan and More); an invalid placement never is."),
    ("gap_by_family", "Gap per instance family",
     "Instance gaps per heuristic, one panel per family of instances."),
    ("gap_vs_runtime", "Gap against runtime",
     "Mean gap against the speedup over the baseline (x faster: above 1 is faster): the "
     "trade-off each heuristic makes. A heuristic invalid on some instance is not drawn."),
    ("gap_attribution", "Gap attribution",
     "Mean loss per stage as a share of the global optimum: to the hierarchy (hierarchical "
     "optimum - global optimum), to replication (best packing of the heuristic's own counts - "
     "its policy's optimum) and to packing (its load - that best packing). Drawn when the run "
     "computed the packing stage (eplbench run --attribution SECONDS)."),
    ("certification_cactus", "Solver certification",
     "Layers of each set certified optimal within a given solver time, from the reference "
     "values the gaps use."),
]
# the page counts its images once loaded (data-images-loaded), for tests and for a quick look
COUNT_LOADED = ("<script>window.addEventListener('load', () => {"
                "const done = [...document.images].filter(i => i.complete && i.naturalWidth > 0);"
                "document.body.dataset.imagesLoaded = done.length;});</script>")


def write_report(table: pd.DataFrame, references: dict[str, list], out: str | os.PathLike,
                 source: str) -> Path:
    """Write the report for `table` (results with reference gaps attached; `references`:
    set name -> its reference entries) into the folder `out`; returns report.html's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn = _figures(table, references, out)
    summaries = [(name, heuristic_summary(rows.reset_index(drop=True)))
                 for name, rows in table.groupby("instance_set", sort=False)]
    summary = gap_table(summaries, f"eplbench report {source}")
    markdown = [f"# eplbench report\n\n{summary}"]
    markdown += [f"## {title}\n\n{text}\n\n![{title}]({stem}.png)\n"
                 for stem, title, text in drawn]
    write_text_atomic(out / "report.md", "\n".join(markdown))
    return write_text_atomic(out / "report.html", _page(summary, drawn, out))


def _figures(table, references, out: Path) -> list[tuple[str, str, str]]:
    """Draw and save each figure that has data: (stem, title, text) of those drawn."""
    makers = {"performance_profile": lambda: plots.performance_profile(table),
              "gap_by_family": lambda: plots.gap_by_family(table),
              "gap_vs_runtime": lambda: plots.gap_vs_runtime(table),
              "gap_attribution": lambda: plots.gap_attribution(table),
              "certification_cactus": lambda: plots.certification_cactus(references)}
    drawn = []
    for stem, title, text in FIGURES:
        figure = makers[stem]()
        if figure is None:
            continue
        with replaced_atomically(out / f"{stem}.png") as temporary:
            figure.savefig(temporary, format="png", dpi=110)
        plt.close(figure)
        drawn.append((stem, title, text))
    return drawn


def _page(summary_markdown: str, drawn, out: Path) -> str:
    sections = []
    for stem, title, text in drawn:
        data = base64.b64encode((out / f"{stem}.png").read_bytes()).decode()
        sections.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>"
                        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">')
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>eplbench report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
            "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
            "padding:2px 6px;text-align:right}td:first-child{text-align:left}"
            "img{max-width:100%}</style>" + COUNT_LOADED + "</head><body>"
            "<h1>eplbench report</h1>" + _markdown_to_html(summary_markdown)
            + "".join(sections) + "</body></html>\n")


def _markdown_to_html(text: str) -> str:
    """The gap table's Markdown (paragraphs and one pipe table) as HTML."""
    parts, rows = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            if not line.startswith("| ---") and not line.startswith("|---"):
                rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    if rows:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
                       + "</tr>" for row in rows[1:])
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    return "".join(parts)
