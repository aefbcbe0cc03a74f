import json

import numpy as np
import pytest
from click.testing import CliRunner

from eplbench.cli import main

COMMANDS = [[], ["run"], ["check"], ["heuristics"], ["instances"], ["instances", "list"],
            ["instances", "generate"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "eplbench")
def test_help_everywhere(command):
    result = CliRunner().invoke(main, command + ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


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
