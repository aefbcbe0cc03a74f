import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from eplbench.cli import main

def command_tree(group=main, path=()):
    """(path, command) for the group and every command below it."""
    import click

    yield list(path), group
    for name, command in getattr(group, "commands", {}).items():
        if isinstance(command, click.Group):
            yield from command_tree(command, (*path, name))
        else:
            yield [*path, name], command


COMMANDS = list(command_tree())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[0]) or "eplbench")
def test_help_everywhere(command):
    path, _ = command
    result = CliRunner().invoke(main, path + ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3
    for name in getattr(command[1], "commands", {}):  # a group's help lists its commands
        assert f"  {name} " in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[0]) or "eplbench")
def test_every_option_has_help_text(command):
    import click

    path, found = command
    bare = [param.opts[0] for param in found.params
            if isinstance(param, click.Option) and not param.help and not param.hidden]
    assert not bare, f"eplbench {' '.join(path)}: options without help: {bare}"


def write_example(tmp_path, readme_example, phy2log):
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weight": readme_example["weight"]}))
    placement = tmp_path / "placement.npy"
    np.save(placement, np.array(phy2log, dtype=np.int64))
    return str(weights), str(placement)


def test_check_valid_placement(tmp_path, readme_example):
    case = readme_example["cases"][0]
    weights, placement = write_example(tmp_path, readme_example, case["phy2log"])
    result = CliRunner().invoke(main, ["check", placement, "--weights", weights,
                                       "--topology", "16,4,2,8"])
    assert result.exit_code == 0, result.output
    assert "0.8277" in result.output and "0.8050" in result.output


def test_check_invalid_placement_exits_1(tmp_path, readme_example):
    phy2log = np.array(readme_example["cases"][0]["phy2log"])
    phy2log[0, 0] = 12
    weights, placement = write_example(tmp_path, readme_example, phy2log)
    result = CliRunner().invoke(main, ["check", placement, "--weights", weights,
                                       "--topology", "16,4,2,8"])
    assert result.exit_code == 1
    assert "INVALID (range)" in result.output


@pytest.mark.parametrize("topology, message", [
    ("16,4,2", "expected four integers"),
    ("16,4,2,6", "num_replicas=16 is not a multiple of num_gpus=6"),
    ("8,4,2,8", "num_replicas=8 is smaller than num_experts=12"),
])
def test_check_bad_topology_exits_2(tmp_path, readme_example, topology, message):
    weights, placement = write_example(tmp_path, readme_example, [[0] * 16] * 2)
    result = CliRunner().invoke(main, ["check", placement, "--weights", weights,
                                       "--topology", topology])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_check_malformed_placement_file_exits_2(tmp_path, readme_example):
    weights, _ = write_example(tmp_path, readme_example, [[0] * 16] * 2)
    broken = tmp_path / "placement.json"
    broken.write_text("{not json")
    result = CliRunner().invoke(main, ["check", str(broken), "--weights", weights,
                                       "--topology", "16,4,2,8"])
    assert result.exit_code == 2
    assert "placement.json: cannot read" in result.output


def test_solve_bench_writes_one_row_per_layer(tmp_path):
    """`solve-bench --layers` writes every tiny layer once; an OPTIMAL row's ub is the
    brute-force optimum, every row's lb <= optimum <= ub, and the table's certified share
    is the share of OPTIMAL rows."""
    from fractions import Fraction

    import pandas as pd

    import eplbench as eb
    from brute_force import optimum

    out = tmp_path / "layers.csv"
    result = CliRunner().invoke(main, ["solve-bench", "--sets", "tiny", "--time-limit", "2",
                                       "--layers", str(out)])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    instances = {instance.id: instance for instance in eb.load_instances("tiny")}
    assert sorted(zip(rows.instance, rows.layer)) == sorted(
        (key, layer) for key, instance in instances.items()
        for layer in range(instance.weight.shape[0]))
    for row in rows.itertuples():
        instance = instances[row.instance]
        best = optimum(instance.weight[row.layer].tolist(), *instance.topology.as_tuple(),
                       "global")
        assert Fraction(row.lb) <= best <= Fraction(row.ub)
        assert (row.status == "OPTIMAL") == (Fraction(row.ub) == Fraction(row.lb))
        if row.status == "OPTIMAL":
            assert Fraction(row.ub) == best
    assert f"{(rows.status == 'OPTIMAL').mean():.0%}" in result.output


def test_bench_checks_output_before_timing_it():
    """A float placement (refused by every other command) is not timed, and bench exits 1."""
    from pathlib import Path

    candidate = str(Path(__file__).parent / "fixtures" / "heuristics" / "float_output.py")
    result = CliRunner().invoke(main, ["bench", "-H", f"{candidate},zigzag", "--baseline",
                                       "deepseek_fast", "--repeats", "1"])
    assert result.exit_code == 1, result.output
    assert result.output.count("not timed, its output is invalid: dtype") == 2
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 4 and not any("float_output" in row for row in rows)


def test_short_names_keep_file_specs_apart():
    from eplbench.reports.names import short_names

    names = ["deepseek", "/a/b/mine.py", "/a/c/mine.py", "/x/other.py", "pkg.mod:fn"]
    assert short_names(names) == {"deepseek": "deepseek", "/a/b/mine.py": "b/mine.py",
                                  "/a/c/mine.py": "c/mine.py", "/x/other.py": "other.py",
                                  "pkg.mod:fn": "pkg.mod:fn"}


def _manifest_with(folder, change):
    import json

    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest["instances"])
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change", [
    lambda entries: entries[0]["topology"].update(extra=1),
    lambda entries: entries.__setitem__(1, "oops"),
], ids=["topology-extra-key", "entry-is-a-string"])
def test_a_broken_manifest_is_one_line_naming_it(tmp_path, change):
    from eplbench.instances import load_instances, save_set

    folder = save_set(tmp_path / "set", "t", load_instances("tiny")[:2])
    _manifest_with(folder, change)
    result = CliRunner().invoke(main, ["instances", "show", str(folder)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("eplbench: error: ") and "manifest.json" in line


def test_bad_scheduler_and_bad_pt_are_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a tensor\n")
    for arguments in (["run", "-H", "zigzag", "-i", "tiny", "--scheduler", "garbage"],
                      ["instances", "import", str(bad), "--topology", "4,1,1,2", "--out",
                       str(tmp_path / "out")]):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("eplbench: error: ")


def test_long_commands_log_a_line_per_unit_when_not_on_a_terminal(tmp_path):
    """solve and replay are never silent in a log: one line per finished unit, with the
    count and, after the first, an estimate of the time left."""
    from eplbench.instances import load_instances, save_set

    folder = save_set(tmp_path / "set", "t", load_instances("tiny")[:3])
    result = CliRunner().invoke(main, ["solve", str(folder), "--time-limit", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("solving ")]
    assert [line.split()[1] for line in lines] == [f"{k}/6" for k in range(1, 7)]
    assert all("s left)" in line for line in lines[1:])
    replay = CliRunner().invoke(main, ["replay", "--simulate", "2x8", "--topology", "12,4,2,4",
                                       "--windows", "3", "-H", "zigzag", "--repeats", "1",
                                       "--solve-time", "1"])
    assert replay.exit_code == 0, replay.output
    assert [line.split()[1] for line in replay.output.splitlines()
            if line.startswith("planning ")] == ["1/2", "2/2"]


def test_check_names_an_instance_by_its_short_id_and_lists_ids_on_a_typo(tmp_path):
    import eplbench as eb

    instance = eb.load_instances("tiny")[0]
    placement = tmp_path / "p.npy"
    phy2log = eb.load_heuristic("deepseek")(__import__("torch").from_numpy(instance.weight),
                                           *instance.topology.as_tuple())[0]
    np.save(placement, phy2log.numpy())
    short = instance.id.rpartition("/")[2]
    result = CliRunner().invoke(main, ["check", str(placement), "--instance", f"tiny:{short}"])
    assert result.exit_code == 0, result.output
    typo = CliRunner().invoke(main, ["check", str(placement), "--instance", "tiny:unifrom-000"])
    assert typo.exit_code == 2 and short in typo.output


def test_evaluate_command_ranks_a_policy_breaker_last(small_evaluation):
    from pathlib import Path

    breaker = str(Path(__file__).parent / "fixtures" / "heuristics" / "breaks_hierarchy.py")
    result = CliRunner().invoke(main, ["evaluate", breaker, "zigzag"])
    assert result.exit_code == 0, result.output
    rows = [line.split("│") for line in result.output.splitlines() if line.startswith("│")]
    assert [row[2].strip() for row in rows] == ["zigzag", "breaks_hierarchy.py"]
    assert "breaks the hierarchical policy" in rows[1][-2]


@pytest.mark.parametrize("width", [100, 120])
def test_a_terminal_of_100_columns_shows_every_heuristic_name_whole(monkeypatch, tmp_path, width):
    """On a narrow terminal the run table wraps headers and leaves optional columns out
    (saying so), never cuts a cell: every shown name (a file spec by its shortest unique
    tail) and every gap is on its row in full."""
    import io
    from pathlib import Path

    from rich.console import Console

    import eplbench.cli

    screen = io.StringIO()
    monkeypatch.setattr(eplbench.cli, "stdout", Console(file=screen, width=width,
                                                        force_terminal=True, color_system=None))
    fixtures = Path(__file__).parent / "fixtures" / "heuristics"
    specs = ["deepseek_fast", "tail_peak_aware", str(fixtures / "vllm_style.py")]
    out = tmp_path / "results.parquet"
    result = CliRunner().invoke(main, ["run", "-H", ",".join(specs), "-i", "tiny",
                                       "--repeats", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    first_cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    for name in ("deepseek", "deepseek_fast", "tail_peak_aware", "vllm_style.py"):
        assert name in first_cells, (name, first_cells)
    table = pd.read_parquet(out)
    for heuristic, rows in table.groupby("heuristic"):
        gap = 100 * (rows.groupby("instance").apply(_instance_gap)).mean()
        row = next(line for line in lines if line.startswith("│")
                   and line.split("│")[1].strip() == Path(heuristic).name)
        assert f"{gap:.3f}%" in [cell.strip() for cell in row.split("│")], (heuristic, row)
    assert "…" not in screen.getvalue()
    assert f"vllm_style.py = {specs[2]}" in screen.getvalue().replace("\n", "")


def _instance_gap(rows) -> float:
    """(sum of layer max loads - sum of reference lower bounds) / the latter, exactly."""
    from fractions import Fraction

    load = sum(Fraction(int(n), int(d)) for n, d in zip(rows.max_load_num, rows.max_load_den))
    best = sum(Fraction(int(n), int(d)) for n, d in zip(rows.ref_lb_num, rows.ref_lb_den))
    return float((load - best) / best)
