"""`eplbench report`: from one or more results tables (`eplbench run --out`, `eplbench replay
--out`), a folder with report.md, a self-contained report.html and its PNG plots.

The module's report merges three files: A (tiny, from a run with a heuristic that breaks
the hierarchy), B (small from the same run, its reference marked uncertified on one
instance, plus a replacement of swap_search's rows on one tiny instance, scored invalid)
and R (a replay). Expected figures are computed here from the rows, not by the code under
test; headless Chromium loads every image of the page."""

import base64
import hashlib
import io
import math
import os
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from eplbench.cli import main
from eplbench.reports import plots
from eplbench.reports.html import FIGURES

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BREAKER = str(Path(__file__).parent / "fixtures" / "heuristics" / "breaks_hierarchy.py")
# fixed modification times (the report dates a file by its mtime): 2023-11-14 22:13 UTC ...
STAMPS = {"A": 1_700_000_000, "B": 1_700_086_400, "R": 1_700_172_800}
DAGGER = "†"


def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report test (.ci/run installs it)")
        pytest.skip("no Chromium here (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    full, replayed = folder / "full.parquet", folder / "R.parquet"
    run = CliRunner().invoke(main, ["run", "-H", f"deepseek_fast,swap_search,zigzag,{BREAKER}",
                                    "-i", "tiny,small", "--repeats", "1", "--attribution", "0.05",
                                    "--out", str(full)])
    assert run.exit_code == 1 and full.exists(), run.output  # 1: the breaker is invalid
    replay = CliRunner().invoke(main, ["replay", "--simulate", "2x8", "--topology", "12,4,2,4",
                                       "--windows", "3", "-H", "swap_search", "--repeats", "1",
                                       "--solve-time", "5", "--out", str(replayed)])
    assert replay.exit_code == 0, replay.output
    table = pd.read_parquet(full)
    first = table[table.instance_set == "tiny"]
    second = table[table.instance_set == "small"].copy()
    uncertified = second.instance.iloc[0]
    second.loc[second.instance == uncertified, "ref_status"] = "FEASIBLE"
    replaced = first.instance.iloc[0]
    again = first[(first.heuristic == "swap_search") & (first.instance == replaced)].copy()
    again[["valid", "reason", "detail"]] = [False, "timeout", "took longer than 10 s"]
    paths = {"A": folder / "A.parquet", "B": folder / "B.parquet", "R": replayed}
    first.to_parquet(paths["A"])
    pd.concat([second, again]).to_parquet(paths["B"])
    for name, path in paths.items():
        os.utime(path, (STAMPS[name], STAMPS[name]))
    report = CliRunner().invoke(main, ["report", str(paths["A"]), str(paths["B"]),
                                       str(paths["R"]), "--out", str(folder / "report")])
    assert report.exit_code == 0, report.output
    return {"folder": folder / "report", "output": report.output,
            "A": first, "B": second, "R": pd.read_parquet(replayed),
            "markdown": (folder / "report" / "report.md").read_text(),
            "uncertified": uncertified, "replaced": replaced}


def sections(markdown: str) -> dict[str, str]:
    """Heading text -> the Markdown under it, up to the next heading."""
    parts = re.split(r"^#{1,3} (.*)$", markdown, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def table_of(text: str) -> list[dict]:
    """The first pipe table in `text`, as a list of {column: cell}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
            for line in lines[2:]]


def set_section(made, name: str) -> str:
    return next(body for title, body in sections(made["markdown"]).items()
                if title.startswith(f"{name}:"))


def instance_figures(rows: pd.DataFrame) -> pd.DataFrame:
    """Per instance, from the rows alone: exact gap to the reference lb, balancedness (sum
    convention), valid, speed (baseline time / time)."""
    out = []
    for instance, group in rows.groupby("instance"):
        load = sum(Fraction(int(n), int(d)) for n, d in zip(group.max_load_num,
                                                            group.max_load_den))
        best = sum(Fraction(int(n), int(d)) for n, d in zip(group.ref_lb_num, group.ref_lb_den))
        out.append({"instance": instance, "gap": float((load - best) / best),
                    "balancedness": group.mean_load.sum() / group.max_load.sum(),
                    "valid": group.valid.all(), "speed": 1 / group.runtime_ratio.iloc[0]})
    return pd.DataFrame(out)


# -- the table -----------------------------------------------------------------------------

def test_each_set_table_lists_validity_gap_balancedness_colocation_and_speed(made):
    rows = {row["heuristic"]: row for row in table_of(set_section(made, "small"))}
    assert list(rows["zigzag"]) == ["heuristic", "valid instances", "gap mean / max",
                                    "balancedness", "co-located", "x faster than deepseek"]
    mine = made["B"][made["B"].heuristic == "zigzag"]
    figures = instance_figures(mine)
    share = mine.colocated_replicas.sum() / mine.num_replicas.sum()
    speed = math.exp(np.log(figures.speed).mean())
    count = mine.instance.nunique()
    assert rows["zigzag"] == {
        "heuristic": "zigzag", "valid instances": f"{count}/{count}",
        "gap mean / max": f"{100 * figures.gap.mean():.3f}% / {100 * figures.gap.max():.3f}% "
                          f"{DAGGER}",
        "balancedness": f"{figures.balancedness.mean():.4f}", "co-located": f"{100 * share:.1f}%",
        "x faster than deepseek": f"{speed:.3g}x"}
    assert rows["deepseek"]["x faster than deepseek"] == "1x"


def test_a_policy_breach_comes_after_every_valid_heuristic_and_says_what_broke(made):
    for name, table in (("tiny", made["A"]), ("small", made["B"])):
        instances = table.instance.nunique()
        mine = table[table.heuristic == BREAKER]
        broken = int((~mine.groupby("instance").valid.all()).sum())
        assert 0 < broken < instances
        body = set_section(made, name)
        rows = table_of(body)
        order = [row["heuristic"] for row in rows]
        valid = [i for i, row in enumerate(rows) if row["valid instances"] == f"{instances}/"
                 f"{instances}"]
        assert valid and order.index(BREAKER) > max(valid), (name, order)
        breaker = rows[order.index(BREAKER)]
        assert breaker["valid instances"] == f"{instances - broken}/{instances}"
        assert breaker["gap mean / max"].startswith("breaks policy")
        assert f"**{BREAKER}** is not valid here: breaks the hierarchical policy" in body
        assert f"invalid on {broken} of {instances} instances: policy x{broken}" in body


def test_cells_whose_reference_is_not_certified_carry_a_dagger_and_a_footnote(made):
    small, tiny = set_section(made, "small"), set_section(made, "tiny")
    gaps = [row["gap mean / max"] for row in table_of(small)]
    assert all(cell.endswith(DAGGER) for cell in gaps if not cell.startswith("breaks"))
    assert f"{DAGGER} the reference is not certified optimal" in small
    assert DAGGER not in tiny  # certified on every tiny instance: no mark, no footnote
    layers = made["B"].drop_duplicates(["instance", "layer"])
    certified = int((layers.ref_status == "OPTIMAL").sum())
    assert certified <= len(layers) - 4  # the instance marked uncertified has 4 layers
    assert f"reference certified on {certified}/{len(layers)} layers" in made["markdown"]


def test_a_later_file_replaces_the_rows_it_shares_and_every_file_is_read(made):
    rows = {row["heuristic"]: row for row in table_of(set_section(made, "tiny"))}
    count = made["A"].instance.nunique()
    assert rows["swap_search"]["valid instances"] == f"{count - 1}/{count}"  # B's, not A's
    assert f"invalid on 1 of {count} instances (timeout x1)" in set_section(made, "tiny")
    assert {"small", "simulated-2x8"} <= {title.split(":")[0]
                                          for title in sections(made["markdown"])}
    replaced = len(made["A"][(made["A"].heuristic == "swap_search")
                             & (made["A"].instance == made["replaced"])])
    said = re.sub(r"\s+", "", made["output"])  # however the console wrapped it
    assert f"A.parquet:{replaced}rowsreplacedbyalaterfile's" in said
    assert f"`A.parquet`: run 2023-11-14 22:13 UTC (file modified); {len(made['A'])} rows, " \
           f"{replaced} replaced by a later file" in made["markdown"]


def test_replay_results_get_a_replay_section(made):
    replay = sections(made["markdown"])["Replay"]
    assert "gap to hindsight" in replay
    rows = {row["heuristic"]: row for row in table_of(set_section(made, "simulated-2x8"))}
    mine = made["R"][made["R"].heuristic == "swap_search"]
    figures = instance_figures(mine)
    assert rows["swap_search"]["valid windows"] == f"{len(figures)}/{len(figures)}"
    assert rows["swap_search"]["replay balancedness"] == f"{figures.balancedness.mean():.4f}"
    gap = rows["swap_search"]["gap to hindsight mean / max"].replace("**", "")
    assert gap == f"{100 * figures.gap.mean():.3f}% / {100 * figures.gap.max():.3f}%"
    assert "planning: x faster than deepseek" in rows["swap_search"]


def test_provenance_names_dates_machine_versions_policies_and_set_hashes(made):
    text = sections(made["markdown"])["Provenance"]
    first = made["A"].iloc[0]
    assert "`B.parquet`: run 2023-11-15 22:13 UTC (file modified)" in text
    assert "`R.parquet`: run 2023-11-16 22:13 UTC (file modified)" in text
    assert (f"machine {first.machine}, threads {first.threads}; eplbench "
            f"{first.eplbench_version}, torch {first.torch_version}, numpy "
            f"{first.numpy_version}, python {first.python_version}") in text
    for name, rows in (("tiny", made["A"]), ("small", made["B"])):
        hashes = "\n".join(sorted(set(rows.instance_hash)))
        digest = hashlib.sha256(hashes.encode()).hexdigest()[:12]
        line = next(line for line in text.splitlines() if line.startswith(f"- {name}:"))
        assert line.startswith(f"- {name}: declared policy hierarchical; "
                               f"{rows.instance.nunique()} instances"), line
        assert line.endswith(f"set hash `{digest}`"), line


# -- the page and its figures ---------------------------------------------------------------

def test_report_has_every_plot(made):
    for stem, _, _ in FIGURES:
        assert (made["folder"] / f"{stem}.png").stat().st_size > 10_000, stem
    assert made["markdown"].count("![") == len(FIGURES)
    page = (made["folder"] / "report.html").read_text()
    inlined = re.findall(r'src="data:image/png;base64,([^"]*)"', page)
    assert len(inlined) == len(FIGURES)
    for data, (stem, _, _) in zip(inlined, FIGURES):  # each decodes whole, as its PNG file
        assert base64.b64decode(data) == (made["folder"] / f"{stem}.png").read_bytes(), stem
        Image.open(io.BytesIO(base64.b64decode(data))).load()


def test_headless_chromium_loads_every_image_and_the_table_shows_validity_and_provenance(made):
    chromium = browser()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=10000"]
    alone = made["folder"].parent / "alone"  # self-contained: the page without its PNGs
    alone.mkdir(exist_ok=True)
    page = Path(shutil.copy(made["folder"] / "report.html", alone)).as_uri()
    dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True,
                         timeout=120).stdout
    assert re.search(r'data-images-loaded="(\d+)"', dom).group(1) == str(len(FIGURES))
    assert "<th>valid instances</th>" in dom and '<h2 id="provenance">Provenance</h2>' in dom
    assert re.search(r"<td>\d+/\d+</td>", dom)
    shot = made["folder"] / "screenshot.png"
    subprocess.run(flags + ["--window-size=1280,4000", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    assert image.size[0] == 1280
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 200  # tables and plots drawn, not blank


def test_report_refuses_a_table_that_is_not_from_run(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(main, ["report", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "bad.csv" in result.output
    assert not (tmp_path / "r").exists()


def test_attribution_adds_up_to_the_gap_to_the_global_optimum():
    """One instance, two layers (tokens): global optima 10 and 20, hierarchical optima 11 and
    21, best packings of the heuristic's counts 12 and 21, its loads 13 and 24: hierarchy
    2/30, replication 1/30, packing 4/30."""
    from eplbench.gaps import attribution

    table = pd.DataFrame({"heuristic": "h", "instance": "i", "instance_set": "s",
                          "valid": True, "layer": [0, 1],
                          "global_lb_num": [10, 20], "global_lb_den": 1,
                          "ref_lb_num": [11, 21], "ref_lb_den": 1,
                          "pack_lb_num": [12, 21], "pack_lb_den": 1,
                          "max_load_num": [13, 24], "max_load_den": 1})
    row = attribution(table).iloc[0]
    assert (row.hierarchy, row.replication, row.packing) == (2 / 30, 1 / 30, 4 / 30)


def synthetic(gaps: dict[str, list[float]], speeds: dict[str, float] | None = None,
              sets=None) -> pd.DataFrame:
    """A results table, one layer per instance, reference 1000 certified: heuristic h's
    load on instance i is 1000 * (1 + gaps[h][i]); sets: instance set and family per
    instance (default one set, one family)."""
    count = len(next(iter(gaps.values())))
    sets = sets or [("s", "f")] * count
    rows = []
    for heuristic, values in gaps.items():
        for index, gap in enumerate(values):
            load = Fraction(1000) * (1 + Fraction(gap).limit_denominator(10**6))
            rows.append({"heuristic": heuristic, "instance": f"{sets[index][0]}/i{index}",
                         "instance_hash": f"h{index}", "instance_set": sets[index][0],
                         "family": sets[index][1], "policy": "global", "layer": 0,
                         "valid": True, "ref_status": "OPTIMAL", "max_load_num":
                         load.numerator, "max_load_den": load.denominator,
                         "ref_ub_num": 1000, "ref_ub_den": 1, "ref_lb_num": 1000,
                         "ref_lb_den": 1, "runtime_ratio": 1 / (speeds or {}).get(heuristic, 1)})
    return pd.DataFrame(rows)


def test_the_profile_merges_identical_heuristics_and_colours_the_best_four():
    gaps = {"a": [0, 0, .01], "b": [.01, 0, 0], "same1": [.02, .02, .02],
            "same2": [.02, .02, .02], "c": [.03, .01, 0], "d": [.05, .05, .05],
            "e": [.1, .1, .1], "f": [.2, .2, .2]}
    _, _, lines, _ = plots.profile_lines(synthetic(gaps))
    labels = [line["label"] for line in lines]
    assert "same1 = same2" in labels and len(labels) == 7
    assert [line["area"] for line in lines] == sorted((line["area"] for line in lines),
                                                      reverse=True)
    figure = plots.performance_profile(synthetic(gaps))
    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == labels  # best first
    colours = [matplotlib.colors.to_hex(line.get_color()) for line in legend.get_lines()]
    assert colours[:4] == plots.STRONG and set(colours[4:]) == {plots.GREY}
    matplotlib.pyplot.close(figure)


def test_gap_against_runtime_labels_never_overlap_and_the_speed_axis_reads_plainly():
    """Twelve heuristics crowded into one spot (the `seedd004` pile-up of the old plot)."""
    names = [f"seed{index:03d}" for index in range(12)]
    gaps = {name: [0.02 + 0.0001 * index] * 2 for index, name in enumerate(names)}
    speeds = {name: 1.3 + 0.01 * index for index, name in enumerate(names)}
    gaps["deepseek"], speeds["deepseek"] = [0.03, 0.03], 1.0
    figure = plots.gap_vs_runtime(synthetic(gaps, speeds))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    labels = [text for text in axes.texts if text.get_text() in set(names) | {"deepseek"}]
    assert len(labels) == 13
    # the text itself (an annotation's own extent takes in its leader line)
    boxes = [matplotlib.text.Text.get_window_extent(text, renderer) for text in labels]
    for i, first in enumerate(boxes):
        for second in boxes[i + 1:]:
            assert not first.overlaps(second), (labels[i].get_text(), first, second)
    ticks = [label.get_text() for label in axes.get_xticklabels()
             if label.get_text() and axes.get_xlim()[0] <= label.get_position()[0]
             <= axes.get_xlim()[1]]
    assert len(ticks) >= 4 and all(re.fullmatch(r"\d+(\.\d+)?", tick) for tick in ticks), ticks
    shown = [label.get_window_extent(renderer) for label in axes.get_xticklabels()
             if label.get_text() in ticks]
    assert not any(a.overlaps(b) for a, b in zip(shown, shown[1:])), ticks
    assert axes.get_xlabel().startswith("x faster than deepseek")
    if os.environ.get("EPLBENCH_KEEP_FIGURES"):  # to look at it
        figure.savefig(Path(os.environ["EPLBENCH_KEEP_FIGURES"]) / "crowded.png", dpi=plots.DPI)
    matplotlib.pyplot.close(figure)


def test_gap_per_family_has_one_panel_per_set_with_its_own_families():
    sets = [("one", "zipf"), ("one", "uniform"), ("two", "hotspot"), ("two", "hotspot")]
    table = synthetic({"a": [0, .01, .02, .03], "b": [.01, .02, .03, .04]}, sets=sets)
    figure = plots.gap_by_family(table)
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [axes.get_title() for axes in panels] == ["one", "two"]
    assert [[label.get_text() for label in axes.get_xticklabels()] for axes in panels] == [
        ["zipf", "uniform"], ["hotspot"]]
    # set two, heuristic b: the mean of its two hotspot instances
    assert "3.50" in [text.get_text() for text in panels[1].texts]
    matplotlib.pyplot.close(figure)


def test_migration_points_use_the_windows_after_a_rebalance():
    from eplbench.reports.plots import migration_points

    def row(heuristic, window, layer, moved, mean, peak, valid=True):
        return {"instance_set": "trace", "heuristic": heuristic, "instance": window,
                "layer": layer, "moved": moved, "mean_load": mean, "max_load": peak,
                "valid": valid, "reason": None if valid else "policy", "detail": None,
                "runtime_s": 0.001, "runtime_ratio": 1.0, "balancedness": mean / peak,
                "respects_hierarchy": valid, "num_replicas": 8, "colocated_replicas": 0}

    table = pd.DataFrame([
        row("a", "w1", 0, np.nan, 1.0, 1.0), row("a", "w1", 1, np.nan, 1.0, 1.0),
        row("a", "w2", 0, 3.0, 2.0, 4.0), row("a", "w2", 1, 5.0, 2.0, 4.0),
        row("a", "w3", 0, 1.0, 3.0, 4.0), row("a", "w3", 1, 1.0, 3.0, 4.0),
        row("b", "w2", 0, 0.0, 2.0, 2.0), row("b", "w2", 1, 0.0, 2.0, 3.0, valid=False)])
    # a: moved (3 + 5 + 1 + 1) / 4; balancedness mean of 4 / 8 and 6 / 8; b: invalid
    assert migration_points(table) == {"trace": [("a", 2.5, 0.625)]}
