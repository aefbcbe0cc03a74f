"""`eplbench.evaluate` (OpenEvolve-style): metrics for a working program, and the worst score
with an error, never a partial average, for one that raises, breaks the contract or the
declared policy, or hangs."""

from pathlib import Path

import pytest

import eplbench as eb
from eplbench import evolve

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"

pytestmark = pytest.mark.usefixtures("small_evaluation")


def test_a_working_program_gets_every_metric(tmp_path, child_starts):
    program = tmp_path / "port.py"
    program.write_text("from eplbench.heuristics.deepseek import rebalance_experts\n")
    result = eb.evaluate(str(program))
    assert len(child_starts) == 2  # the program's and the yardstick's, once for all six runs
    assert "error" not in result and result["validity"] == 1.0
    assert 0 < result["mean_gap"] <= result["max_gap"] < 0.2
    assert 0 < result["replay_balancedness"] <= 1
    # the slow port is slower than the vectorised yardstick
    assert 0 < result["speedup"] < 1
    speedup = result["speedup"]
    # gap score x replay balancedness x (s / (1 + s)) ** 0.25, as docs/openevolve.md states
    expected = (result["replay_balancedness"] * (speedup / (1 + speedup)) ** 0.25
                / (1 + result["mean_gap"] / 0.01))
    assert result["combined_score"] == pytest.approx(expected, rel=1e-12)


def test_a_built_in_name_is_evaluated_like_its_file(tmp_path):
    result = eb.evaluate_stage1("swap_search")
    assert "error" not in result and result["validity"] == 1.0 and result["speedup"] > 0


def test_speed_score_rises_with_speed_and_stays_below_one():
    assert evolve.speed_score(1.0) == pytest.approx(0.5 ** 0.25)
    scores = [evolve.speed_score(s) for s in (0.01, 0.1, 1.0, 10.0, 100.0)]
    assert scores == sorted(scores) and len(set(scores)) == 5 and scores[-1] < 1


def test_a_program_that_breaks_the_hierarchy_gets_the_worst_score():
    program = str(HEURISTICS / "breaks_hierarchy.py")
    result = eb.evaluate(program)
    assert result["combined_score"] == 0.0 and result["validity"] == 0.0
    assert "breaks the hierarchical policy" in result["error"]
    # the same program is valid where the global policy is declared
    assert eb.evaluate_stage1(program, policy="global")["validity"] == 1.0


@pytest.mark.parametrize("name, reason", [("raises.py", "raised"), ("wrong_shape.py", "shape"),
                                          ("sleeps.py", "timeout"), ("missing.py", "no such")])
def test_failures_get_the_worst_score_and_say_why(name, reason, monkeypatch):
    monkeypatch.setattr(evolve, "TIME_LIMIT", 1.0)
    result = eb.evaluate(str(HEURISTICS / name))
    assert result["combined_score"] == 0.0 and result["validity"] == 0.0
    assert reason in result["error"]
    assert "mean_gap" not in result and "speedup" not in result


def test_fresh_instances_differ_every_evaluation_and_come_solved():
    """Drawn from a secret seed each time, so no lookup table built beforehand can hold
    them; each comes with a reference entry per layer of its declared policy."""
    first, second = evolve._fresh_set(None), evolve._fresh_set(None)
    hashes = [{i.content_hash for i in instances} for _, instances, _ in (first, second)]
    assert len(hashes[0]) == evolve.FRESH_COUNT and not hashes[0] & hashes[1]
    _, instances, entries = first
    assert {entry.key for entry in entries} == {
        (i.content_hash, layer, i.policy) for i in instances for layer in range(i.num_layers)}
    assert all(entry.lb <= entry.ub for entry in entries)
