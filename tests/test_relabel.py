"""Relabelling (spec §11): the same loads, the hierarchy kept, and the fewest weights
received over every renumbering of nodes, GPUs within nodes and slots within GPUs."""

import itertools

import numpy as np
import pytest

import eplbench as eb
from eplbench.relabel import relabel

from test_migration import random_plan


def renumberings(plan, topo):
    """Every plan from `plan` ([P]) by moving nodes and GPUs within nodes (slot order
    kept: it changes no weight received)."""
    per_node = topo.gpus_per_node
    gpus = plan.reshape(topo.num_gpus, -1)
    inner = list(itertools.permutations(range(per_node)))
    for nodes in itertools.permutations(range(topo.num_nodes)):
        for orders in itertools.product(inner, repeat=topo.num_nodes):
            yield np.concatenate([gpus[node * per_node + position]
                                  for node, order in zip(nodes, orders) for position in order])


def cost(old, new, topo):
    moved = eb.migration(old, new, topo)
    return int(moved.received[0]), int(moved.inter_node[0])


@pytest.mark.parametrize("shape", [(8, 2, 2, 4), (12, 4, 2, 6), (12, 3, 3, 6), (8, 1, 1, 4)])
def test_relabelling_receives_the_fewest_weights_of_every_renumbering(shape):
    topo = eb.Topology(*shape)
    rng = np.random.default_rng(sum(shape))
    for num_experts in (3, topo.num_replicas // 2, topo.num_replicas - 1):
        for _ in range(8):
            old, new = (random_plan(rng, 1, num_experts, topo)[0] for _ in range(2))
            best = min(cost(old, candidate, topo) for candidate in renumberings(new, topo))
            assert cost(old, relabel(old, new, topo)[0], topo) == best


def test_relabelling_keeps_every_load_and_the_hierarchy():
    topo = eb.Topology(32, 4, 2, 8)
    rng = np.random.default_rng(7)
    heuristic = eb.load_heuristic("deepseek")
    weight = rng.integers(0, 1000, (6, 16))
    old = heuristic(weight, *topo.as_tuple())[0]
    new = heuristic(rng.permutation(weight, axis=1), *topo.as_tuple())[0]
    moved = relabel(old, new, topo)
    before, after = eb.check(weight, new, topo), eb.check(weight, moved, topo)
    assert after.max_load == before.max_load
    assert (np.sort(after.gpu_load, 1) == np.sort(before.gpu_load, 1)).all()
    assert before.respects_hierarchy and after.respects_hierarchy
    assert (eb.migration(old, moved, topo).received
            <= eb.migration(old, new, topo).received).all()


def test_a_renumbered_plan_relabels_back_to_the_plan_in_place_slot_for_slot():
    topo = eb.Topology(24, 4, 2, 6)
    rng = np.random.default_rng(3)
    old = random_plan(rng, 1, 10, topo)[0]
    for _ in range(10):
        shuffled = next(itertools.islice(renumberings(old, topo), int(rng.integers(72)), None))
        shuffled = np.concatenate([rng.permutation(gpu) for gpu in shuffled.reshape(6, 4)])
        assert relabel(old, shuffled, topo)[0].tolist() == old.tolist()


def test_each_gpu_keeps_as_many_slots_unchanged_as_its_experts_allow():
    topo = eb.Topology(12, 1, 1, 2)
    rng = np.random.default_rng(4)
    for _ in range(50):
        old, new = (random_plan(rng, 1, 4, topo)[0] for _ in range(2))
        moved = relabel(old, new, topo)[0]
        for gpu in range(2):
            before, after = old[gpu * 6:(gpu + 1) * 6], moved[gpu * 6:(gpu + 1) * 6]
            kept = sum(min((before == e).sum(), (after == e).sum()) for e in range(4))
            assert (before == after).sum() == kept
