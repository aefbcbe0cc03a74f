"""`budgeted@K`: from the plan in place, at most K weights received per layer, never a
higher max load, the hierarchy of the plan in place kept."""

from fractions import Fraction

import numpy as np
import pytest
import torch

import eplbench as eb
from eplbench.heuristics.deepseek_fast import rebalance_experts as deepseek

SHAPES = [(16, 4, 2, 4, 12), (24, 8, 2, 8, 16), (12, 1, 1, 4, 8), (18, 3, 3, 6, 9)]


@pytest.mark.parametrize("slots, groups, nodes, gpus, experts", SHAPES)
@pytest.mark.parametrize("budget", [0, 1, 3, 10])
def test_within_budget_never_worse_and_the_hierarchy_kept(slots, groups, nodes, gpus,
                                                          experts, budget):
    rng = np.random.default_rng(slots * 1000 + budget)
    topo = eb.Topology(slots, groups, nodes, gpus)
    heuristic = eb.load_heuristic(f"budgeted@{budget}")
    for _ in range(20):
        before = torch.from_numpy(rng.integers(0, 1000, (3, experts)))
        after = torch.from_numpy(rng.integers(0, 1000, (3, experts)))
        old = deepseek(before, *topo.as_tuple())[0]
        new = heuristic(after, *topo.as_tuple(), old_plan=old.clone())
        kept, moved = eb.check(after, new, topo), eb.migration(old, new, topo)
        in_place = eb.check(after, old, topo)
        assert (moved.received <= budget).all()
        assert all(mine <= theirs for mine, theirs in zip(kept.max_load, in_place.max_load))
        assert kept.respects_hierarchy or not in_place.respects_hierarchy
        if budget == 0:  # only free moves: copies of experts a GPU already holds
            per_gpu = slots // gpus
            for layer_old, layer_new in zip(old.tolist(), new.tolist()):
                assert all(set(layer_new[g:g + per_gpu]) <= set(layer_old[g:g + per_gpu])
                           for g in range(0, slots, per_gpu))


def test_a_swap_costs_two_weights_and_is_made_when_two_are_left():
    """Expert 0 (10 tokens) twice on GPU 0, experts 1 and 2 (1 token) on GPU 1: max load
    10. No rewrite helps (the only expert with a spare replica is the heavy one); swapping
    one replica of expert 0 with expert 1 gives 6 and 6, and costs two weights received."""
    weight, topo = torch.tensor([[10, 1, 1]]), eb.Topology(4, 1, 1, 2)
    old = torch.tensor([[0, 0, 1, 2]])
    assert eb.check(weight, old, topo).max_load == [10]
    one = eb.load_heuristic("budgeted@1")(weight, 4, 1, 1, 2, old_plan=old)
    two = eb.load_heuristic("budgeted@2")(weight, 4, 1, 1, 2, old_plan=old)
    assert torch.equal(one, old)
    assert eb.check(weight, two, topo).max_load == [Fraction(6)]
    assert eb.migration(old, two, topo).received.tolist() == [2]


def test_without_a_plan_in_place_it_is_deepseeks_placement():
    weight = torch.tensor([[90, 10, 40, 30, 25, 5, 60, 20]])
    mine, theirs = eb.load_heuristic("budgeted")(weight, 12, 4, 2, 4), deepseek(weight, 12, 4, 2, 4)
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs))


def test_a_budget_on_a_heuristic_that_takes_none_is_refused():
    with pytest.raises(eb.BadInput, match="zigzag takes no budget"):
        eb.load_heuristic("zigzag@3")
