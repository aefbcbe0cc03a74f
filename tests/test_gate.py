"""`eplbench gate`: exit 0 for a candidate as good as the baseline, 1 with the failed check
named for a broken, a worse and a slower one, 2 for bad input."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from eplbench.cli import main
from eplbench.gate import bootstrap_interval, round_log_ratios

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"


def gate(candidate: str, *extra: str):
    result = CliRunner().invoke(main, ["gate", "--candidate", candidate, "-i", "tiny",
                                       "--repeats", "3", "--time-limit", "5", *extra])
    verdicts = dict(re.findall(r"│ tiny\s+│ (valid|gap|speed)\s+│.*?│ (pass|FAIL)\s+│",
                               result.output))
    return result, verdicts


def test_the_vectorised_port_passes_against_the_port():
    """Same placements, faster: every check passes."""
    result, verdicts = gate("deepseek_fast")
    assert result.exit_code == 0, result.output
    assert verdicts == {"valid": "pass", "gap": "pass", "speed": "pass"}


def test_a_wrong_shape_fails_validity_with_its_reason():
    result, verdicts = gate(str(HEURISTICS / "wrong_shape.py"))
    assert result.exit_code == 1
    assert verdicts["valid"] == "FAIL"
    assert re.search(r"tiny/\S+\s+│ valid\s+│ shape", result.output), result.output


def test_a_slow_candidate_fails_speed_only():
    result, verdicts = gate(str(HEURISTICS / "slow.py"))
    assert result.exit_code == 1
    assert verdicts == {"valid": "pass", "gap": "pass", "speed": "FAIL"}, result.output


def test_a_worse_candidate_fails_gap_and_names_the_instances():
    result, verdicts = gate("zigzag", "--max-slowdown", "1000")
    assert result.exit_code == 1
    assert verdicts["gap"] == "FAIL" and verdicts["valid"] == "pass"
    assert re.search(r"tiny/\S+\s+│ gap\s+│ gap [\d.]+% vs [\d.]+%", result.output)


def test_bad_input_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["gate", "--candidate", str(tmp_path / "missing.py"),
                                       "-i", "tiny"])
    assert result.exit_code == 2 and "missing.py" in result.output
    result = CliRunner().invoke(main, ["gate", "--candidate", "zigzag", "-i", "tiny",
                                       "--max-gap-increase", "lots"])
    assert result.exit_code == 2


def test_round_log_ratios_pair_rounds_and_the_interval_covers_the_mean():
    rows = pd.DataFrame({"instance": ["a", "a", "b", "b"],
                         "heuristic": ["new", "old", "new", "old"],
                         "runtime_samples": [[2.0, 4.0], [1.0, 1.0], [3.0], [1.5]]})
    ratios = round_log_ratios(rows, "new", "old")
    assert np.allclose(np.exp(ratios), [2.0, 4.0, 2.0])
    low, high = bootstrap_interval(ratios)
    assert low <= ratios.mean() <= high and low >= np.log(2.0) - 1e-12
