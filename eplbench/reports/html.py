"""`eplbench report`: a folder with report.md, a self-contained report.html (figures inlined
as PNG data) and the PNG files, from one or more results tables and the sets' reference
values."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from eplbench.atomic import replaced_atomically, write_text_atomic
from eplbench.reports import plots
from eplbench.reports.document import Bullets, Figure, Heading, Paragraph, to_html, to_markdown
from eplbench.reports.markdown import set_table, uniqueness_blocks
from eplbench.reports.provenance import ResultsFile, file_lines, set_lines
from eplbench.reports.tables import heuristic_summary

# (file stem, title, what it shows); drawn in this order
FIGURES = [
    ("performance_profile", "Performance profile",
     "Share of instances on which a heuristic's cost (1 + gap) is within a factor tau of the "
     "best heuristic's on that instance (Dolan and More), over the instances every "
     "heuristic ran on (replay windows aside); an invalid placement never is. Heuristics "
     "whose gaps are identical on every instance share one line (a = b); the four lines "
     "with the largest area under the curve are in colour, the rest thin and grey; the "
     "legend lists them best first."),
    ("gap_by_family", "Gap per instance family",
     "One panel per instance set: the mean instance gap (%) of each heuristic (rows, best "
     "first) on each family of instances (columns); `invalid` where the heuristic's "
     "placement is invalid on an instance of the family, `not run` where it was not run on "
     "the set. The colour is scaled per panel."),
    ("gap_vs_runtime", "Gap against runtime",
     "One panel per instance set: each heuristic's mean gap against its speed, x faster than "
     "the baseline (geometric mean over instances of baseline time / heuristic time: above 1 "
     "is faster). The dashed line joins the heuristics nothing beats on both; heuristics at "
     "the same point share a label (a = b). A heuristic invalid on some instance of the set "
     "is not drawn there."),
    ("gap_attribution", "Gap attribution",
     "Mean loss per stage as a share of the global optimum: to the hierarchy (hierarchical "
     "optimum - global optimum), to replication (best packing of the heuristic's own counts - "
     "its policy's optimum) and to packing (its load - that best packing). Drawn when the run "
     "computed the packing stage (eplbench run --attribution SECONDS)."),
    ("balance_vs_migration", "Balance against migration",
     "One panel per replay: each heuristic's balancedness on the served windows that follow a "
     "rebalance against the expert weights its plans make GPUs receive per layer and "
     "rebalance. With `--frontier` points (`eplbench replay --frontier K1,K2 "
     "--frontier-out`), the frontier from the baseline's plan in place: the best plan found "
     "within K weights (solid) and the bound no plan within K weights beats (dashed), both "
     "in hindsight, on the served window itself."),
    ("certification_cactus", "Solver certification",
     "Layers of each set certified optimal within a given solver time (seconds of work), "
     "from the reference values the gaps use."),
]

COLUMNS = ("Valid: instances on which every layer's placement is valid for the set's declared "
           "policy. Gap: per instance (sum of layer max loads - sum of optima of the declared "
           "policy) / sum of optima, mean / max over the valid instances (the best mean in "
           "bold). Balancedness: mean over valid instances of sum(mean load) / sum(max load) "
           "(1 is perfect). Co-located: share of slots holding a second replica of an expert "
           "on the same GPU. x faster than the baseline: geometric mean over instances of the "
           "baseline's time / the heuristic's, one thread each, timed in the same run (above "
           "1 is faster). Rows: valid heuristics by mean gap, then the others.")
REPLAY = ("Each heuristic plans on window t and is served window t + 1 (`eplbench replay`). "
          "Replay balancedness: mean over served windows; gap to hindsight: against each "
          "served window solved on its own, which no planner beats (the results table's "
          "gaps); speed: of planning.")


def write_report(table: pd.DataFrame, references: dict[str, list], out: str | os.PathLike,
                 files: list[ResultsFile] | str, frontier: pd.DataFrame | None = None) -> Path:
    """Write the report for `table` (results with reference gaps attached, merged from
    `files`: the ResultsFile of each, or one path) into the folder `out`; `references`: set
    name -> its reference entries; frontier: `replay --frontier-out` points, if any.
    Returns report.html's path."""
    out = Path(out)
    if isinstance(files, (str, os.PathLike)):
        from eplbench.reports.provenance import read_merged

        _, files = read_merged([files])
    out.mkdir(parents=True, exist_ok=True)
    drawn = _figures(table, references, out, frontier)
    blocks = _blocks(table, files, drawn, references)
    write_text_atomic(out / "report.md", to_markdown(blocks))
    return write_text_atomic(out / "report.html", to_html(blocks, out, "eplbench report"))


def _is_replay(rows: pd.DataFrame) -> bool:
    return "planned_on" in rows and bool(rows.planned_on.notna().any())


def _blocks(table: pd.DataFrame, files: list[ResultsFile], drawn: list,
            references: dict[str, list]) -> list:
    baseline = plots.baseline_name(table)
    sets = list(table.groupby("instance_set", sort=False))
    runs = [(name, rows) for name, rows in sets if not _is_replay(rows)]
    replays = [(name, rows) for name, rows in sets if _is_replay(rows)]
    names = " ".join(f"`{Path(item.path).name}`" for item in files)
    dates = sorted({item.date for item in files})
    machines = ", ".join(dict.fromkeys(str(m) for m in table.get("machine", pd.Series(
        dtype=str)).dropna())) or "an unrecorded machine"
    blocks = [Heading(1, "eplbench report"),
              Paragraph(f"Generated by `eplbench report` from {names}: "
                        f"{table.heuristic.nunique()} heuristics on {len(sets)} instance "
                        f"set(s), run {' and '.join(dates)} on {machines}; speed is x faster "
                        f"than `{baseline}`. Details under Provenance.")]
    if runs:
        blocks += [Heading(2, "Results per instance set", "results"), Paragraph(COLUMNS)]
        for name, rows in runs:
            blocks += [Heading(3, _set_title(name, rows))]
            blocks += set_table(heuristic_summary(rows.reset_index(drop=True)), baseline)
    if replays:
        blocks += [Heading(2, "Replay", "replay"), Paragraph(REPLAY)]
        for name, rows in replays:
            blocks += [Heading(3, _set_title(name, rows, "served windows"))]
            blocks += set_table(heuristic_summary(rows.reset_index(drop=True)), baseline,
                                replay=True)
    blocks += [Figure(stem, title, text) for stem, title, text in drawn]
    blocks += uniqueness_blocks(references)
    blocks += [Heading(2, "Provenance", "provenance"),
               Paragraph("Results files, later ones replacing the rows of earlier ones with "
                         "the same heuristic, instance and layer (the date is the run's, or "
                         "the file's modification time where the table does not record it):"),
               Bullets(file_lines(table, files)),
               Paragraph("Instance sets (the set hash: the first 12 hex digits of the sha256 "
                         "of the sorted instance content hashes, one a line):"),
               Bullets(set_lines(table))]
    return blocks


def _set_title(name: str, rows: pd.DataFrame, unit: str = "instances") -> str:
    instances = rows.drop_duplicates("instance")
    policies = ", ".join(dict.fromkeys(instances.policy.astype(str)))
    count = len(instances)
    return f"{name}: {count} {unit if count != 1 else unit[:-1]}, declared policy {policies}"


def _figures(table, references, out: Path, frontier=None) -> list[tuple[str, str, str]]:
    """Draw and save each figure that has data: (stem, title, text) of those drawn."""
    makers = {"balance_vs_migration": lambda: plots.balance_vs_migration(table, frontier),
              "performance_profile": lambda: plots.performance_profile(table),
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
            figure.savefig(temporary, format="png", dpi=plots.DPI)
        plt.close(figure)
        drawn.append((stem, title, text))
    return drawn
