"""`eplbench.evaluate` (OpenEvolve-style): metrics for a working program, and the worst score
with an error, never a partial average, for one that raises, breaks the contract or hangs."""

from pathlib import Path

import pytest

import eplbench as eb
from eplbench import evolve

HEURISTICS = Path(__file__).parent / "fixtures" / "heuristics"


def test_a_working_program_gets_every_metric(tmp_path):
    program = tmp_path / "port.py"
    program.write_text("from eplbench.heuristics.deepseek_fast import rebalance_experts\n")
    result = eb.evaluate(str(program))
    assert "error" not in result and result["validity"] == 1.0
    assert 0 < result["mean_gap"] <= result["max_gap"] < 0.2
    assert 0 < result["replay_balancedness"] <= 1 and result["runtime_ratio"] > 0
    speed = evolve._speed_score(result["runtime_ratio"])
    assert result["combined_score"] == pytest.approx(speed / (1 + result["mean_gap"] / 0.01))


@pytest.mark.parametrize("name, reason", [("raises.py", "raised"), ("wrong_shape.py", "shape"),
                                          ("sleeps.py", "timeout"), ("missing.py", "no such")])
def test_failures_get_the_worst_score_and_say_why(name, reason, monkeypatch):
    monkeypatch.setattr(evolve, "TIME_LIMIT", 1.0)
    result = eb.evaluate(str(HEURISTICS / name))
    assert result["combined_score"] == 0.0 and result["validity"] == 0.0
    assert reason in result["error"]
    assert "mean_gap" not in result and "runtime_ratio" not in result
