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
from eplbench.solvers.frontier import least_moves, solve_budget
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


@pytest.mark.parametrize("weight, topo, policy, old", list(_cases(12)))
def test_least_moves_is_the_first_budget_whose_point_reaches_the_target(weight, topo, policy,
                                                                         old):
    shape = (topo.num_replicas, topo.num_groups, topo.num_nodes, topo.num_gpus)
    expected = frontier(weight, *shape, policy.value, old.tolist())
    for target in sorted(set(expected)):
        result = least_moves(weight, topo, policy, old, target, time_limit=5.0)
        least = next(k for k, load in enumerate(expected) if load <= target)
        assert (result.status, result.moves, result.moves_lb) == ("OPTIMAL", least, least)
        assert int(migration(old, result.phy2log, topo).received[0]) == least
        assert result.max_load == layer_max_load(weight, result.phy2log, topo, policy) <= target


def test_a_target_between_the_bounds_and_the_optimum_is_proven_out_of_reach():
    weight, topo, policy, old = next(_cases(1))  # optimum 31/2, lower bound 15
    best = optimum(weight, topo.num_replicas, topo.num_groups, topo.num_nodes,
                   topo.num_gpus, policy.value)
    result = least_moves(weight, topo, policy, old, best - Fraction(1, 3), time_limit=5.0)
    assert (result.status, result.moves, result.phy2log) == ("INFEASIBLE", None, None)
    assert result.moves_lb == topo.num_replicas + 1
    with pytest.raises(BadInput, match="below the layer's lower bound"):
        least_moves(weight, topo, policy, old, Fraction(1), time_limit=5.0)
    # no time to search: not proven, only not found
    result = least_moves(weight, topo, policy, old, best - Fraction(1, 3), time_limit=0)
    assert (result.status, result.moves, result.moves_lb) == ("UNKNOWN", None, 0)


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
                         solve_time=0.05)[0]
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
    least_out = tmp_path / "least.csv"
    result = runner.invoke(main, ["frontier", str(tmp_path / "set"), "--budgets", "2,0",
                                  "--time-limit", "5", "--out", str(out), "--least-out",
                                  str(least_out), "--reach", "0.1,0"])
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
    least = pd.read_csv(least_out)
    assert least["share"].tolist() == [0, 0.1, 0, 0.1]
    assert set(least["status"]) == {"OPTIMAL"} and least["optimum_certified"].all()
    for row in least.itertuples():
        expected = frontier(instance.weight[row.layer], *shape, policy, old[row.layer].tolist())
        assert Fraction(row.optimum) == expected[-1]
        assert Fraction(row.target) == expected[-1] * (1 + Fraction(row.share).limit_denominator())
        assert row.moves == row.moves_lb == next(k for k, load in enumerate(expected)
                                                 if load <= Fraction(row.target))


@pytest.mark.parametrize("arguments, message", [
    (["--budgets", "2,-1"], "integers >= 0"),
    (["--reach", "0,-0.01", "--least-out", "l.csv"], "numbers >= 0"),
    (["--reach", "1/0", "--least-out", "l.csv"], "numbers >= 0"),
    (["--reach", "0.1"], "give --least-out FILE too"),
    (["--least-out", "l.txt"], "l.txt: results are written as .parquet or .csv"),
])
def test_frontier_command_refuses_bad_options_before_any_work(tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["frontier", "tiny", *arguments, "--out",
                                       str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "p.csv").exists()


def test_least_moves_are_certified_only_against_a_certified_optimum(monkeypatch):
    from eplbench.frontier import least_row
    from eplbench.solvers.frontier import LeastMoves

    plan = np.zeros(4, dtype=np.int64)
    monkeypatch.setattr("eplbench.frontier.least_moves", lambda *args, **kwargs: LeastMoves(
        "OPTIMAL", 0, 0, plan, Fraction(10), 0.0))
    best_known = SolveResult("FEASIBLE", Fraction(10), Fraction(9), plan, 0.0, None, "enum")
    row = least_row(None, None, Policy.GLOBAL, plan, Fraction(0), best_known, [], [], plan,
                    1.0)
    assert (row["moves"], row["optimum_certified"], row["status"]) == (0, False, "FEASIBLE")
    optimum = SolveResult("OPTIMAL", Fraction(10), Fraction(10), plan, 0.0, None, "enum")
    row = least_row(None, None, Policy.GLOBAL, plan, Fraction(0), optimum, [], [], plan, 1.0)
    assert row["status"] == "OPTIMAL"


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
    rows = frontier_rows(instance, "deepseek", Policy.GLOBAL, [0, 1, 2], solve_time=1.0)[0]
    first_layer = [(row["lb"], row["status"]) for row in rows if row["layer"] == 0]
    assert first_layer == [("7", "FEASIBLE"), ("7", "FEASIBLE"), ("7", "FEASIBLE")]
    found[2] = (8, 8)
    rows = frontier_rows(instance, "deepseek", Policy.GLOBAL, [0, 1, 2], solve_time=1.0)[0]
    assert [row["status"] for row in rows if row["layer"] == 0] == ["FEASIBLE", "OPTIMAL",
                                                                    "OPTIMAL"]


def test_a_budget_point_above_the_target_proves_more_moves_are_needed(monkeypatch):
    from eplbench.frontier import least_row
    from eplbench.solvers.frontier import LeastMoves

    plan = np.zeros(4, dtype=np.int64)
    monkeypatch.setattr("eplbench.frontier.least_moves", lambda *args, **kwargs: LeastMoves(
        "FEASIBLE", 6, 0, plan, Fraction(10), 0.0))
    optimum = SolveResult("OPTIMAL", Fraction(10), Fraction(10), plan, 0.0, None, "enum")

    def point(lb):
        return SolveResult("FEASIBLE", Fraction(12), Fraction(lb), plan, 0.0, None, "cpsat")

    found = [point(11), point(Fraction(21, 2)), point(10)]  # at budgets 0, 3 and 8
    row = least_row(None, None, Policy.GLOBAL, plan, Fraction(0), optimum, [0, 3, 8], found,
                    plan, 1.0)
    assert (row["target"], row["moves"], row["moves_lb"]) == ("10", 6, 4)
    assert row["status"] == "FEASIBLE"
    row = least_row(None, None, Policy.GLOBAL, plan, Fraction(1, 20), optimum, [0, 3, 8],
                    found, plan, 1.0)
    assert (row["target"], row["moves_lb"]) == ("21/2", 1)


def _generated_set(runner, folder, layers):
    generated = runner.invoke(main, ["instances", "generate", "--family", "uniform", "--layers",
                                     str(layers), "--experts", "4", "--topology", "8,2,2,4",
                                     "--out", str(folder)])
    assert generated.exit_code == 0, generated.output
    return load_instances(str(folder))[0]


def test_solve_from_a_plan_file_gives_the_frontier_point_of_each_layer(tmp_path):
    runner = CliRunner()
    instance = _generated_set(runner, tmp_path / "set", layers=3)
    topo = instance.topology
    old = np.stack([deepseek_placement(w[::-1].copy(), topo, Policy.HIERARCHICAL)
                    for w in instance.weight])
    np.save(tmp_path / "old.npy", old)
    out = tmp_path / "points.csv"
    result = runner.invoke(main, ["solve", str(tmp_path / "set"), "--old",
                                  str(tmp_path / "old.npy"), "--max-moves", "1",
                                  "--time-limit", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    points = pd.read_csv(out)
    assert points["policy"].tolist() == ["global"] * 3 + ["hierarchical"] * 3
    shape = (topo.num_replicas, topo.num_groups, topo.num_nodes, topo.num_gpus)
    for row in points.itertuples():
        expected = frontier(instance.weight[row.layer], *shape, row.policy,
                            old[row.layer].tolist())
        assert (Fraction(row.ub), row.status) == (expected[1], "OPTIMAL")


@pytest.mark.parametrize("arguments, message", [
    (["--max-moves", "1"], "go together"),
    (["--old", "{old}"], "go together"),
    (["--old", "{short}", "--max-moves", "1"], "short.npy: "),
    (["--old", "{old}", "--max-moves", "-1"], "-1 is not in the range"),
    (["--old", "{old}", "--max-moves", "1", "--policy", "bogus"], "error: unknown policy"),
    (["--old", "{old}", "--max-moves", "1", "--out", "p.txt"], "p.txt: results are written"),
])
def test_solve_from_a_plan_refuses_bad_input_naming_it(tmp_path, arguments, message):
    runner = CliRunner()
    instance = _generated_set(runner, tmp_path / "set", layers=2)
    old = np.stack([deepseek_placement(w, instance.topology, Policy.GLOBAL)
                    for w in instance.weight])
    np.save(tmp_path / "old.npy", old)
    np.save(tmp_path / "short.npy", old[:1])
    paths = {"old": tmp_path / "old.npy", "short": tmp_path / "short.npy"}
    result = runner.invoke(main, ["solve", str(tmp_path / "set"),
                                  *(item.format(**paths) for item in arguments)])
    assert result.exit_code == 2 and message in result.output, result.output


def test_solve_from_a_plan_needs_one_instance():
    result = CliRunner().invoke(main, ["solve", "tiny", "--old", "x.npy", "--max-moves", "1"])
    assert result.exit_code == 2 and "name one as tiny:ID" in result.output


def _drifting(num_windows=4):
    """Windows of 2 layers x 4 experts on 2 nodes of 2 GPUs (8 slots), drifting loads."""
    from eplbench.replay import window_instances

    rng = np.random.default_rng(5)
    loads = [rng.integers(0, 40, (2, 4)) for _ in range(num_windows)]
    return window_instances(loads, Topology(8, 2, 2, 4), "drift")


def test_the_replay_frontier_is_hindsight_from_the_plan_before_the_planned_window():
    from eplbench.frontier import replay_frontier

    windows = _drifting()
    rows, least = replay_frontier(windows, "deepseek", Policy.HIERARCHICAL, [0, 1, 3], 5.0)
    assert {row["instance"] for row in rows} == {"drift/window-002", "drift/window-003"}
    topo = windows[0].topology
    for row in rows:
        index = int(row["instance"][-3:])
        assert row["planned_from"] == windows[index - 2].id
        old = plan_in_place("deepseek", windows[index - 2], 10.0)[row["layer"]]
        weight = windows[index].weight[row["layer"]]
        expected = frontier(weight, 8, 2, 2, 4, "hierarchical", old.tolist())
        assert (Fraction(row["ub"]), row["status"]) == (expected[row["budget"]], "OPTIMAL")
        assert row["received"] <= row["budget"]
        assert row["mean_load"] == weight.sum() / topo.num_gpus
    assert len(least) == 4
    for row in least:
        index = int(row["instance"][-3:])
        old = plan_in_place("deepseek", windows[index - 2], 10.0)[row["layer"]]
        serving = plan_in_place("deepseek", windows[index - 1], 10.0)[row["layer"]]
        weight = windows[index].weight[row["layer"]]
        expected = frontier(weight, 8, 2, 2, 4, "hierarchical", old.tolist())
        target = layer_max_load(weight, serving, topo, Policy.HIERARCHICAL)
        assert Fraction(row["target"]) == target
        assert row["baseline_moved"] == int(migration(old, serving, topo).received[0])
        assert row["moves"] == row["moves_lb"] == next(k for k, load in enumerate(expected)
                                                       if load <= target)
        assert row["moves"] <= row["baseline_relabelled"] <= row["baseline_moved"]


def test_frontier_summary_takes_each_windows_sums():
    from eplbench.frontier import frontier_summary

    def row(window, budget, mean, ub, lb, status="FEASIBLE", received=0):
        return {"instance": window, "layer": 0, "budget": budget, "mean_load": mean,
                "ub": ub, "lb": lb, "status": status, "received": received}

    rows = [row("w1", 0, 4.0, "8", "5"), row("w1", 0, 2.0, "2", "2", "OPTIMAL"),
            row("w2", 0, 3.0, "6", "3", received=2), row("w2", 2, 3.0, "3", "3", "OPTIMAL", 1)]
    rows[1]["layer"] = 1
    summary = frontier_summary(rows)
    assert [item["budget"] for item in summary] == [0, 2]
    # window w1: (4 + 2) / (8 + 2); w2: 3 / 6; bound: 6 / 7 and 3 / 3
    assert summary[0]["balancedness"] == pytest.approx((0.6 + 0.5) / 2)
    assert summary[0]["bound"] == pytest.approx((6 / 7 + 1.0) / 2)
    assert summary[0]["received"] == pytest.approx(2 / 3)
    assert summary[0]["certified"] == pytest.approx(1 / 3)
    assert (summary[1]["balancedness"], summary[1]["certified"]) == (1.0, 1.0)


@pytest.mark.cli
def test_replay_frontier_points_are_written_and_drawn(tmp_path):
    points, results = tmp_path / "points.csv", tmp_path / "replay.parquet"
    runner = CliRunner()
    replayed = runner.invoke(main, ["replay", "--simulate", "2x16", "--windows", "3",
                                    "--topology", "32,4,2,8", "--solve-time", "0.2",
                                    "--repeats", "1", "-H", "budgeted@4", "--frontier", "0,64",
                                    "--frontier-out", str(points), "--out", str(results)])
    assert replayed.exit_code == 0, replayed.output
    assert "frontier (hindsight)" in replayed.output
    written = pd.read_csv(points)
    assert set(written.instance) == {"simulated-2x16/window-002"}
    assert sorted(set(written.budget)) == [0, 64] and len(written) == 4
    reported = runner.invoke(main, ["report", str(results), "--frontier", str(points),
                                    "--out", str(tmp_path / "report")])
    assert reported.exit_code == 0, reported.output
    assert (tmp_path / "report" / "balance_vs_migration.png").stat().st_size > 0
    assert "Balance against migration" in (tmp_path / "report" / "report.md").read_text()
