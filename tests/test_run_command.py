"""`eplbench run` with user files: broken candidates are invalid with a reason, the rest print."""

from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from eplbench import Instance, Topology
from eplbench.cli import main
from eplbench.instances import save_set

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"


def two_instance_set(folder):
    rng = np.random.default_rng(1)
    instances = [Instance(id=f"t/{index}", weight=rng.integers(0, 100, (2, 8)),
                          topology=Topology(12, 2, 1, 4), family="uniform")
                 for index in range(2)]
    return save_set(folder / "set", "t", instances)


def test_broken_candidates_are_reported_and_others_print(tmp_path):
    folder = two_instance_set(tmp_path)
    specs = ["deepseek_fast"] + [str(HEURISTICS / name) for name in
                                 ("round_robin.py", "raises.py", "wrong_shape.py", "sleeps.py",
                                  "crashes.py", "no_entry.py")]
    out = tmp_path / "results.parquet"
    result = CliRunner().invoke(main, ["run", "--heuristics", ",".join(specs), "--instances",
                                       str(folder), "--time-limit", "2", "--repeats", "1",
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    table = pd.read_parquet(out)
    reasons = table.groupby("heuristic").reason.first().to_dict()
    by_name = {Path(spec).name: reasons[spec] for spec in specs}
    assert by_name == {"deepseek_fast": "", "round_robin.py": "", "raises.py": "raised",
                       "wrong_shape.py": "shape", "sleeps.py": "timeout",
                       "crashes.py": "crashed", "no_entry.py": "load"}
    assert table[table.heuristic == specs[2]].detail.str.contains("always fails").all()
    for spec in specs:
        assert Path(spec).name in result.output or spec in result.output


def test_run_default_prints_gaps_for_both_deepseek_rows():
    result = CliRunner().invoke(main, ["run", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    for name in ("tiny", "small", "medium-cut", "deepseek-v3-cut"):
        assert f"heuristics on {name}" in result.output
    assert "deepseek_fast" in result.output and "20/20" in result.output
    assert "gap mean" in result.output and "ref certified" in result.output
    assert "no reference values" not in result.output


def test_unknown_heuristic_is_bad_input():
    result = CliRunner().invoke(main, ["run", "--heuristics", "nope"])
    assert result.exit_code == 2
    assert "unknown heuristic 'nope'" in result.output
