"""The migration frontier (spec §11) against an independent brute force on tiny layers."""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from brute_force import optimum
from brute_frontier import frontier
from eplbench.cli import main
from eplbench.errors import BadInput
from eplbench.frontier import frontier_rows, plan_in_place
from eplbench.instances import load_instances
from eplbench.migration import migration
from eplbench.problem import Policy, Topology
from eplbench.solvers.frontier import solve_budget
from eplbench.solvers.incumbent import deepseek_placement, layer_max_load
from eplbench.solvers.result import SolveResult

# (num_experts, topology): 2 nodes of 2 GPUs, 1 node of 3, 2 nodes of 1 GPU of 3 slots
SHAPES = [(4, Topology(8, 2, 2, 4)), (4, Topology(6, 2, 1, 3)), (4, Topology(6, 2, 2, 2))]


def _cases(count):
    rng = np.random.default_rng(11)
    for index in range(count):
        num_experts, topo = SHAPES[index % len(SHAPES)]
        policy = Policy.HIERARCHICAL if index % 2 else Policy.GLOBAL
        weight = rng.integers(0, 40, num_experts)
        old = deepseek_placement(rng.integers(0, 40, num_experts), topo, policy)
        yield weight, topo, policy, old


@pytest.mark.parametrize("weight, topo, policy, old", list(_cases(12)))
def test_every_budget_is_certified_at_the_brute_force_value(weight, topo, policy, old):
    shape = (topo.num_replicas, topo.num_groups, topo.num_nodes, topo.num_gpus)
    expected = frontier(weight, *shape, policy.value, old.tolist())
    assert expected[-1] == optimum(weight, *shape, policy.value)  # the oracles agree
    for budget, least in enumerate(expected):
        result = solve_budget(weight, topo, policy, old, budget, time_limit=5.0)
        assert result.lb <= least <= result.ub, budget
        assert (result.status, result.ub) == ("OPTIMAL", least), budget
        moved = int(migration(old, result.phy2log, topo).received[0])
        assert moved == result.params["received"] <= budget
        assert layer_max_load(weight, result.phy2log, topo, policy) == result.ub


def test_the_plan_in_place_must_keep_the_hierarchy_it_is_solved_under():
    topo = Topology(8, 2, 2, 4)
    old = np.array([0, 2, 1, 3, 0, 2, 1, 3])  # groups {0, 1} and {2, 3} span both nodes
    with pytest.raises(BadInput, match="hierarchical"):
        solve_budget(np.array([5, 4, 3, 2]), topo, "hierarchical", old, 2, 1.0)


def test_a_negative_budget_is_refused():
    topo = Topology(4, 1, 1, 2)
    with pytest.raises(BadInput, match="max_moves"):
        solve_budget(np.array([5, 4]), topo, "global", np.array([0, 1, 0, 1]), -1, 1.0)


def test_the_sweep_never_rises_with_the_budget_and_counts_what_each_plan_receives():
    instance = load_instances("tiny")[20]  # 4 experts, 15 slots on 5 GPUs of 1 node
    rows = frontier_rows(instance, "deepseek", Policy.GLOBAL, [0, 1, 2, 4, 15],
                         solve_time=0.05)
    topo = instance.topology
    for layer in range(instance.num_layers):
        mine = [row for row in rows if row["layer"] == layer]
        assert [row["budget"] for row in mine] == [0, 1, 2, 4, 15]
        # every plan receives at most P weights: the last point is the layer's optimum
        assert Fraction(mine[-1]["ub"]) == optimum(instance.weight[layer], topo.num_replicas,
                                                   1, 1, topo.num_gpus, "global")
        for low, high in zip(mine, mine[1:]):
            assert Fraction(high["ub"]) <= Fraction(low["ub"])
            assert Fraction(high["lb"]) <= Fraction(low["lb"])
        assert all(row["received"] <= row["budget"] for row in mine)
        assert all(Fraction(row["lb"]) <= Fraction(row["ub"]) for row in mine)


def test_frontier_command_writes_certified_points(tmp_path):
    runner = CliRunner()
    generated = runner.invoke(main, ["instances", "generate", "--family", "uniform",
                                     "--layers", "2", "--experts", "4", "--topology",
                                     "8,2,2,4", "--out", str(tmp_path / "set")])
    assert generated.exit_code == 0, generated.output
    out = tmp_path / "points.csv"
    result = runner.invoke(main, ["frontier", str(tmp_path / "set"), "--budgets", "2,0",
                                  "--time-limit", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    points = pd.read_csv(out)
    assert points["budget"].tolist() == [0, 2, 0, 2]
    assert set(points["status"]) == {"OPTIMAL"}
    instance = load_instances(str(tmp_path / "set"))[0]
    topo, policy = instance.topology, instance.policy
    shape = (topo.num_replicas, topo.num_groups, topo.num_nodes, topo.num_gpus)
    old = plan_in_place("deepseek", instance, 10.0)
    for row in points.itertuples():
        expected = frontier(instance.weight[row.layer], *shape, policy, old[row.layer].tolist())
        assert Fraction(row.ub) == expected[row.budget]


def test_frontier_command_refuses_a_bad_budget_list(tmp_path):
    result = CliRunner().invoke(main, ["frontier", "tiny", "--budgets", "2,-1", "--out",
                                       str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "integers >= 0" in result.output


def test_a_bound_proven_at_a_larger_budget_holds_at_every_smaller_one(monkeypatch):
    instance = load_instances("tiny")[0]
    found = {0: (9, 5), 1: (8, 4), 2: (8, 7)}  # budget -> (ub, lb) as the solves return them

    def fake_solve(weight, topology, policy, old, budget, time_limit, starts, lower):
        ub, lb = found[budget]
        return SolveResult("FEASIBLE", Fraction(ub), Fraction(lb), old, 0.0, None, "cpsat",
                           {"received": 0, "work": 0.0})

    monkeypatch.setattr("eplbench.frontier.solve_budget", fake_solve)
    monkeypatch.setattr("eplbench.frontier.plan_in_place",
                        lambda spec, instance, time: np.zeros((instance.num_layers, 1)))
    unconstrained = SolveResult("FEASIBLE", Fraction(9), Fraction(3), np.zeros(1), 0.0, None,
                                "enum")
    monkeypatch.setattr("eplbench.frontier.solve", lambda *args, **kwargs: [unconstrained])
    monkeypatch.setattr("eplbench.frontier.relabel", lambda old, new, topo: new[None])
    rows = frontier_rows(instance, "deepseek", Policy.GLOBAL, [0, 1, 2], solve_time=1.0)
    first_layer = [(row["lb"], row["status"]) for row in rows if row["layer"] == 0]
    assert first_layer == [("7", "FEASIBLE"), ("7", "FEASIBLE"), ("7", "FEASIBLE")]
    found[2] = (8, 8)
    rows = frontier_rows(instance, "deepseek", Policy.GLOBAL, [0, 1, 2], solve_time=1.0)
    assert [row["status"] for row in rows if row["layer"] == 0] == ["FEASIBLE", "OPTIMAL",
                                                                    "OPTIMAL"]
