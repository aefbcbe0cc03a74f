"""The declared policy decides validity and the gap: a placement that breaks the hierarchy
of a hierarchical set is invalid (reason `policy`) in run, gate, replay, report and
evaluate, its gap is taken against the hierarchical optimum, and it is never ranked above
a valid heuristic."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import eplbench as eb
from eplbench.cli import main
from eplbench.gaps import attach_reference, instance_gaps
from eplbench.instances import reference_path, with_policy
from eplbench.reference import read_reference

BREAKER = str(Path(__file__).parent / "fixtures" / "heuristics" / "breaks_hierarchy.py")
BREACH = "breaks the hierarchical policy"


def test_sets_declare_hierarchical_where_the_topology_defines_it():
    assert {i.policy for i in eb.load_instances("tiny")} == {"hierarchical"}
    # Qwen3-MoE-shaped: one group on four nodes, no hierarchy: global
    topology = eb.Topology(160, 1, 4, 32)
    assert eb.Instance(id="q", weight=np.ones((1, 128), dtype=np.int64),
                       topology=topology).policy == "global"


def test_declaring_hierarchical_on_a_topology_without_it_is_bad_input():
    instance = eb.Instance(id="odd/0", weight=np.ones((1, 6), dtype=np.int64),
                           topology=eb.Topology(8, 3, 2, 4))
    with pytest.raises(eb.BadInput, match="odd/0"):
        with_policy([instance], "hierarchical")


def test_the_declared_policy_survives_a_round_trip_through_a_set_folder(tmp_path):
    instances = with_policy(eb.load_instances("tiny")[:2], "global")
    eb.instances.save_set(tmp_path / "set", "t", instances)
    assert {i.policy for i in eb.load_instances(str(tmp_path / "set"))} == {"global"}


def test_gaps_are_taken_against_the_declared_policys_reference():
    """The same placement's gap differs by the policy the row declares."""
    entries = read_reference(reference_path("small"))
    by_key = {entry.key: entry for entry in entries}
    # an instance whose two optima differ on layer 0
    instance = next(i for i in eb.load_instances("small")
                    if by_key[i.content_hash, 0, "hierarchical"].lb
                    > by_key[i.content_hash, 0, "global"].ub)
    load = by_key[instance.content_hash, 0, "hierarchical"].ub * 2
    row = {"instance": instance.id, "instance_hash": instance.content_hash, "layer": 0,
           "heuristic": "h", "valid": True, "max_load_num": load.numerator,
           "max_load_den": load.denominator}
    for policy in ("global", "hierarchical"):
        table = attach_reference(pd.DataFrame([{**row, "policy": policy}]), entries)
        optimum = by_key[instance.content_hash, 0, policy].ub
        assert table.ref_policy[0] == policy
        assert table.gap_lo[0] == pytest.approx(float((load - optimum) / optimum), rel=1e-12)


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("policy") / "results.parquet"
    result = CliRunner().invoke(main, ["run", "-H", f"{BREAKER},zigzag", "-i", "tiny",
                                       "--repeats", "1", "--out", str(out)])
    return result, pd.read_parquet(out)


def test_run_marks_the_breach_invalid_and_keeps_its_loads(broken_run):
    result, table = broken_run
    assert result.exit_code == 1, result.output
    mine = table[table.heuristic == BREAKER]
    broken = mine[mine.reason == "policy"]
    assert broken.instance.nunique() == 10  # the tiny instances with more than one node
    assert broken.detail.str.startswith(BREAKER).sum() == 0  # the breach, not the file
    assert broken.detail.str.contains(BREACH).all() and broken.max_load_num.notna().all()
    assert (mine[mine.reason == ""].valid).all()
    assert (mine.ref_policy == "hierarchical").all()
    gaps = instance_gaps(table)
    assert gaps[(gaps.heuristic == BREAKER) & ~gaps.valid].gap_hi.notna().all()
    assert BREACH in result.output


def test_run_lists_the_breaker_after_every_valid_heuristic(broken_run):
    result, _ = broken_run
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    order = ["breaker" if "policy x10" in row else row.split("│")[1].strip() for row in rows]
    assert order == ["deepseek", "zigzag", "breaker"], result.output


def test_the_global_policy_makes_the_same_placements_valid():
    result = CliRunner().invoke(main, ["run", "-H", BREAKER, "-i", "tiny", "--repeats", "1",
                                       "--policy", "global"])
    assert result.exit_code == 0, result.output
    assert BREACH not in result.output and "(global policy)" in result.output


def test_the_gate_fails_the_breach_and_says_why():
    result = CliRunner().invoke(main, ["gate", "--candidate", BREAKER, "-i", "tiny",
                                       "--repeats", "2", "--max-slowdown", "1000"])
    assert result.exit_code == 1
    assert BREACH in result.output and "policy:" in result.output


def test_replay_says_the_breaker_breaks_the_policy():
    result = CliRunner().invoke(main, ["replay", "--simulate", "2x8", "--topology", "12,4,2,4",
                                       "--windows", "3", "-H", BREAKER, "--repeats", "1",
                                       "--solve-time", "5"])
    assert result.exit_code == 1, result.output
    assert BREACH in result.output and "hierarchical policy" in result.output


def test_the_report_names_the_breach_and_ranks_it_last(broken_run, tmp_path):
    _, table = broken_run
    results = tmp_path / "results.parquet"
    table.to_parquet(results)
    made = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "r")])
    assert made.exit_code == 0, made.output
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert BREACH in markdown
    results = markdown.split("## Price of uniqueness")[0]  # the tables before it
    rows = [line for line in results.splitlines() if line.startswith("| ")][1:]
    assert rows[-1].startswith(f"| {BREAKER} |") and "breaks policy" in rows[-1]


def test_a_policy_breach_keeps_exact_loads():
    """The breaker's rows hold the checker's exact max load, as a valid row would."""
    instance = next(i for i in eb.load_instances("tiny") if i.topology.num_nodes > 1)
    heuristic = eb.load_heuristic(BREAKER)
    import torch

    output = heuristic(torch.from_numpy(instance.weight), *instance.topology.as_tuple())
    evaluation = eb.check_output(instance.weight, output, instance.topology)
    from eplbench.runner import score
    from eplbench.sandbox import Measurement

    rows = score("b", instance, Measurement(output=tuple(t.numpy() for t in output)))
    assert [Fraction(r["max_load_num"], r["max_load_den"]) for r in rows] == evaluation.max_load
    assert {r["reason"] for r in rows} == ({"policy"} if evaluation.breach("hierarchical")
                                           else {""})
