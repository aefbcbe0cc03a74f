"""`eplbench report`: from `eplbench run --out`, a folder with report.md, a self-contained
report.html and its PNG plots; headless Chromium loads every image of the page."""

import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from PIL import Image

from eplbench.cli import main
from eplbench.reports.html import FIGURES

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report test (.ci/run installs it)")
        pytest.skip("no Chromium here (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    results = folder / "results.parquet"
    run = CliRunner().invoke(main, ["run", "-H", "deepseek_fast,swap_search,zigzag", "-i",
                                    "tiny,small", "--repeats", "1", "--attribution", "5",
                                    "--out", str(results)])
    assert run.exit_code == 0, run.output
    made = CliRunner().invoke(main, ["report", str(results), "--out", str(folder / "report")])
    assert made.exit_code == 0, made.output
    return folder / "report"


def test_report_has_every_plot_and_the_gap_table(report):
    for stem, _, _ in FIGURES:
        assert (report / f"{stem}.png").stat().st_size > 10_000, stem
    markdown = (report / "report.md").read_text()
    assert "| swap_search |" in markdown and markdown.count("![") == len(FIGURES)
    page = (report / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)


def test_headless_chromium_loads_every_image(report):
    chromium = browser()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--virtual-time-budget=10000"]
    page = (report / "report.html").as_uri()
    dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True,
                         timeout=120).stdout
    assert re.search(r'data-images-loaded="(\d+)"', dom).group(1) == str(len(FIGURES))
    shot = report / "screenshot.png"
    subprocess.run(flags + ["--window-size=1200,4000", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120, check=True)
    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 200  # plots drawn, not a blank page


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
    import pandas as pd

    from eplbench.gaps import attribution

    table = pd.DataFrame({"heuristic": "h", "instance": "i", "instance_set": "s",
                          "valid": True, "layer": [0, 1],
                          "global_lb_num": [10, 20], "global_lb_den": 1,
                          "ref_lb_num": [11, 21], "ref_lb_den": 1,
                          "pack_lb_num": [12, 21], "pack_lb_den": 1,
                          "max_load_num": [13, 24], "max_load_den": 1})
    row = attribution(table).iloc[0]
    assert (row.hierarchy, row.replication, row.packing) == (2 / 30, 1 / 30, 4 / 30)
