"""Replay: plans from window t are scored on window t + 1, and no heuristic beats the
hindsight optimum (each served window solved on its own) or the fixed plan's lower bound."""

import re
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import eplbench as eb
from eplbench.cli import main
from eplbench.gaps import attach_reference
from eplbench.problem import Topology
from eplbench.replay import (fixed_plan, hindsight_entries, replay_rows, simulated_windows,
                             window_instances)
from eplbench.runner import RunOptions

TOPOLOGY = Topology(12, 4, 2, 4)
HEURISTICS = ["deepseek_fast", "swap_search", "zigzag", "seed003"]


@pytest.fixture(scope="module")
def replayed():
    loads = simulated_windows(2, 8, 5, seed=3, groups=4, topk_groups=2, top_k=2, tokens=1024)
    windows = window_instances(loads, TOPOLOGY, "drift")
    rows = replay_rows(HEURISTICS, windows, RunOptions(repeats=1))
    hindsight = hindsight_entries(windows[1:], ["global", "hierarchical"], "enum", 10)
    return windows, attach_reference(rows.assign(instance_set="drift"), hindsight), hindsight


def test_each_plan_is_scored_on_the_next_window(replayed):
    windows, table, _ = replayed
    heuristic = eb.load_heuristic("deepseek_fast")
    for plan, served in zip(windows, windows[1:]):
        phy2log = heuristic(torch.from_numpy(plan.weight), *TOPOLOGY.as_tuple())[0]
        expected = eb.check(served.weight, phy2log, TOPOLOGY).max_load
        mine = table[(table.heuristic == "deepseek_fast") & (table.instance == served.id)]
        assert [Fraction(int(n), int(d)) for n, d in
                zip(mine.max_load_num, mine.max_load_den)] == list(expected)


def test_each_rebalance_costs_what_the_heuristics_own_plans_move(replayed):
    """Per heuristic and layer, the plan for a served window against its own plan for the
    window before: weights moved as `eb.migration` counts them, relabelled no more; none
    before the first rebalance."""
    from eplbench.relabel import relabel

    windows, table, _ = replayed
    heuristic = eb.load_heuristic("deepseek_fast")
    plans = [heuristic(torch.from_numpy(w.weight), *TOPOLOGY.as_tuple())[0] for w in windows]
    mine = table[table.heuristic == "deepseek_fast"]
    first = mine[mine.instance == windows[1].id]
    assert first[["moved", "relabelled_moved", "moved_seconds"]].isna().all().all()
    moved_somewhere = 0
    for before, after, served in zip(plans, plans[1:], windows[2:]):
        rows = mine[mine.instance == served.id].sort_values("layer")
        moved = eb.migration(before, after, TOPOLOGY)
        kept = eb.migration(before, relabel(before, after, TOPOLOGY), TOPOLOGY)
        assert rows.moved.tolist() == moved.received.tolist()
        assert rows.moved_inter_node.tolist() == moved.inter_node.tolist()
        assert rows.moved_bytes.tolist() == moved.bytes.tolist()
        assert rows.moved_seconds.tolist() == moved.seconds.tolist()
        assert rows.relabelled_moved.tolist() == kept.received.tolist()
        assert rows.relabelled_inter_node.tolist() == kept.inter_node.tolist()
        assert (rows.relabelled_moved <= rows.moved).all()
        moved_somewhere += int(moved.received.sum())
    assert moved_somewhere > 0
    assert table.groupby("heuristic").moved.count().eq(3 * 2).all()  # 3 rebalances x 2 layers


def test_no_heuristic_beats_the_hindsight_optimum(replayed):
    windows, table, hindsight = replayed
    by_key = {entry.key: entry for entry in hindsight}
    assert all(entry.status == "OPTIMAL" for entry in hindsight)  # small enough to certify
    assert table.valid.all() and len(table) == 5 * 4 * 2  # baseline + 4, 4 windows, 2 layers
    for row in table.itertuples():
        load = Fraction(int(row.max_load_num), int(row.max_load_den))
        assert load >= by_key[row.instance_hash, row.layer, "global"].ub
        if row.respects_hierarchy:
            assert load >= by_key[row.instance_hash, row.layer, "hierarchical"].ub
    assert (table.gap_hi >= 0).all() and (table.gap_lo >= 0).all()


def test_fixed_plan_bounds_hold(replayed):
    """Its lb is below any heuristic's summed load, its ub a real plan's summed load, which
    is at least the sum of the hindsight optima."""
    windows, table, hindsight = replayed
    plan = fixed_plan(windows[1:], hindsight, "global", "enum", 10)
    optimum = sum((entry.ub for entry in hindsight if entry.policy == "global"), Fraction(0))
    assert optimum <= plan.lb <= plan.ub
    for _, group in table.groupby("heuristic"):
        load = sum(Fraction(int(n), int(d)) for n, d in zip(group.max_load_num,
                                                            group.max_load_den))
        assert load >= plan.lb


def test_replay_command_prints_a_row_per_heuristic(tmp_path):
    result = CliRunner().invoke(main, ["replay", "--simulate", "2x8", "--topology", "12,4,2,4",
                                       "--windows", "3", "-H", "zigzag", "--repeats", "1",
                                       "--solve-time", "5", "--relabel",
                                       "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 0, result.output
    assert "zigzag" in result.output and "deepseek" in result.output
    assert set(pd.read_parquet(tmp_path / "r.parquet").heuristic) == {
        "deepseek", "zigzag", "zigzag+relabel"}  # the baseline is not relabelled
    bad = CliRunner().invoke(main, ["replay", "--simulate", "4by64"])
    assert bad.exit_code == 2 and "LAYERSxEXPERTS" in bad.output


KEEPS_OLD_PLAN = str(Path(__file__).parent / "fixtures" / "heuristics" / "keeps_old_plan.py")


def test_a_heuristic_that_takes_the_plan_in_place_gets_its_own_previous_plan(
        tmp_path, monkeypatch):
    """`keeps_old_plan.py` returns the plan it is given: DeepSeek's plan for window 0 stays
    in place for every later window, so no rebalance after the first moves a weight; it is
    given no plan for window 0 and one at each later window (warm-up and timed calls)."""
    log = tmp_path / "calls.log"
    monkeypatch.setenv("EPLBENCH_CALL_LOG", str(log))
    loads = simulated_windows(2, 8, 4, seed=3, groups=4, topk_groups=2, top_k=2, tokens=1024)
    windows = window_instances(loads, TOPOLOGY, "drift")
    rows = replay_rows([KEEPS_OLD_PLAN], windows, RunOptions(repeats=1))
    kept = rows[rows.heuristic == KEEPS_OLD_PLAN].sort_values(["planned_on", "layer"])
    first = eb.load_heuristic("deepseek_fast")(torch.from_numpy(windows[0].weight),
                                                *TOPOLOGY.as_tuple())[0]
    for served in windows[1:]:
        mine = kept[kept.instance == served.id]
        assert [Fraction(int(n), int(d)) for n, d in zip(mine.max_load_num, mine.max_load_den)] \
            == list(eb.check(served.weight, first, TOPOLOGY).max_load)
    assert kept.moved.isna().sum() == 2 and (kept.moved.dropna() == 0).all()
    calls = log.read_text().split()
    # a call too short for the clock is timed in a batch, so count runs, not calls: window
    # 0's warm-up and timed calls get no plan, both later windows' calls get one
    first_given = calls.index("given")
    assert first_given >= 2 and set(calls[:first_given]) == {"none"}
    assert set(calls[first_given:]) == {"given"} and len(calls) - first_given >= 4


def test_relabelled_replay_moves_what_relabelling_the_fresh_plans_moves():
    """NAME+relabel, given its own previous plan, reaches the fewest weights received over
    renumberings: what `relabel` gets from the heuristic's fresh plans, at the same loads."""
    loads = simulated_windows(2, 8, 4, seed=5, groups=4, topk_groups=2, top_k=2, tokens=1024)
    windows = window_instances(loads, TOPOLOGY, "drift")
    rows = replay_rows(["zigzag", "zigzag+relabel"], windows, RunOptions(repeats=1))
    key = ["instance", "layer"]
    fresh = rows[rows.heuristic == "zigzag"].set_index(key).sort_index()
    kept = rows[rows.heuristic == "zigzag+relabel"].set_index(key).sort_index()
    assert (kept.max_load_num * fresh.max_load_den == fresh.max_load_num * kept.max_load_den).all()
    later = fresh.moved.notna()
    assert later.sum() == 4 and (fresh.moved[later] > fresh.relabelled_moved[later]).any()
    assert (kept.moved[later] == fresh.relabelled_moved[later]).all()
    assert (kept.moved_inter_node[later] == fresh.relabelled_inter_node[later]).all()


def test_the_summary_sums_served_loads_and_rebalance_costs_over_the_trace(replayed):
    from eplbench.replay import replay_summary

    windows, table, _ = replayed
    summary = replay_summary(table, {}).set_index("heuristic")
    for name in HEURISTICS:
        mine = table[table.heuristic == name]
        moved = []
        for layer in range(2):
            plans = [eb.load_heuristic(name)(torch.from_numpy(window.weight),
                                             *TOPOLOGY.as_tuple())[0][layer].numpy()
                     for window in windows[:-1]]
            moved += [int(eb.migration(a, b, TOPOLOGY).received[0])
                      for a, b in zip(plans, plans[1:])]
        assert summary.moved_sum[name] == sum(moved)
        loads = [eb.check(served.weight, eb.load_heuristic(name)(
            torch.from_numpy(plan.weight), *TOPOLOGY.as_tuple())[0], TOPOLOGY).max_load
            for plan, served in zip(windows, windows[1:])]
        assert summary.served_load_sum[name] == pytest.approx(float(sum(map(sum, loads))))
        assert summary.moved_bytes_sum[name] == pytest.approx(mine.moved_bytes.sum())


def test_a_heuristic_that_raises_is_summarised_without_loads(tmp_path):
    raises = str(Path(__file__).parent / "fixtures" / "heuristics" / "raises.py")
    result = CliRunner().invoke(main, ["replay", "--simulate", "2x8", "--topology", "12,4,2,4",
                                       "--windows", "3", "-H", raises, "--repeats", "1",
                                       "--solve-time", "1"])
    assert result.exit_code == 1, result.output
    assert "over the trace" in result.output and "Traceback" not in result.output
    # no valid window: no replay balancedness, and no served load over the trace
    assert re.search(r"raises\.py\s+│\s+0/2\s+│\s+-\s+│", result.output), result.output
    assert re.search(r"raises\.py\s+│\s+-\s+│\s+- \(-\)\s+│", result.output), result.output
