"""Every built-in heuristic: valid on every bundled instance, hierarchical where the topology
allows; the seeds' replication stages behave as SPEC 10 predicts."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eplbench as eb
from eplbench.heuristics import list_heuristics
from eplbench.heuristics.replication_fixups import divisor_allocation, maps_from_counts, move_fixup

BUNDLED = [name for name, where in eb.list_instance_sets().items() if where == "bundled"]


@pytest.mark.parametrize("name", sorted(list_heuristics()))
def test_builtin_valid_and_hierarchical_on_bundled_sets(name):
    heuristic = eb.load_heuristic(name)
    for set_name in BUNDLED:
        for instance in eb.load_instances(set_name):
            output = heuristic(torch.from_numpy(instance.weight), *instance.topology.as_tuple())
            evaluation = eb.check_output(instance.weight, output, instance.topology)
            if instance.topology.hierarchy_problem(instance.num_experts) is None:
                assert evaluation.respects_hierarchy, (name, instance.id)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 1000), min_size=6, max_size=6), min_size=1,
                max_size=4), st.integers(0, 12))
def test_one_step_move_never_fires_after_dhondt(rows, extra):
    weight = np.array(rows, dtype=np.float64)
    counts = divisor_allocation(weight, np.ones(weight.shape, dtype=np.int64), extra, 0.0)
    assert np.array_equal(move_fixup(weight, counts, candidates=1), counts)


def test_two_by_two_move_follows_the_seeds_rule():
    """Seed 004's rule predicts the peak from the second-largest load, so a move by the
    second donor fires although the top expert keeps the peak where it was."""
    weight = np.array([[100.0, 60.0, 1.0]])
    counts = np.array([[2, 3, 1]])
    fixed = move_fixup(weight, counts, candidates=2)
    assert fixed.tolist() == [[2, 2, 2]]
    assert (weight / fixed).max() == (weight / counts).max() == 50.0
    assert move_fixup(weight, counts, candidates=1).tolist() == counts.tolist()


def test_divisor_allocations_by_hand():
    """w = [10, 4], both seated once, three more seats: D'Hondt compares w / c,
    Sainte-Lague w / (c + 0.5)."""
    weight = np.array([[10.0, 4.0]])
    start = np.ones((1, 2), dtype=np.int64)
    assert divisor_allocation(weight, start, 3, 0.0).tolist() == [[3, 2]]
    assert divisor_allocation(weight, start, 3, 0.5).tolist() == [[4, 1]]


def test_maps_from_counts():
    phy2log, rank, logcnt = maps_from_counts(np.array([[2, 1], [1, 2]]))
    assert phy2log.tolist() == [[0, 0, 1], [0, 1, 1]]
    assert rank.tolist() == [[0, 1, 0], [0, 0, 1]]
    assert logcnt.tolist() == [[2, 1], [1, 2]]
