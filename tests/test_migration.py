"""Rebalance cost (spec §11): weights received per layer, split by source, local rewrites,
bytes and modelled time, against a count written straight from the definitions."""

import numpy as np
import pytest
import torch

import eplbench as eb
from eplbench.migration import DEEPSEEK_V3_EXPERT_BYTES, NVLINK_BYTES_PER_SECOND


def by_definition(old, new, topo, expert_bytes, intra_bw, inter_bw):
    """Per layer: (received, intra, inter, local, seconds), from sets of experts per GPU."""
    rows = []
    slots, per_node = topo.slots_per_gpu, topo.gpus_per_node
    for old_row, new_row in zip(old.tolist(), new.tolist()):
        held = [set(old_row[g * slots:(g + 1) * slots]) for g in range(topo.num_gpus)]
        intra = inter = 0
        slowest = 0.0
        for g in range(topo.num_gpus):
            node = g // per_node
            on_node = set().union(*held[node * per_node:(node + 1) * per_node])
            gets = set(new_row[g * slots:(g + 1) * slots]) - held[g]
            near = len(gets & on_node)
            intra, inter = intra + near, inter + len(gets) - near
            slowest = max(slowest, near * expert_bytes / intra_bw
                          + (len(gets) - near) * expert_bytes / inter_bw)
        changed = sum(a != b for a, b in zip(old_row, new_row))
        rows.append((intra + inter, intra, inter, changed - intra - inter, slowest))
    return rows


def random_plan(rng, num_layers, num_experts, topo):
    """[L, P] placements: every expert once, the other slots drawn at random, shuffled."""
    rows = []
    for _ in range(num_layers):
        row = np.concatenate([np.arange(num_experts),
                              rng.integers(0, num_experts, topo.num_replicas - num_experts)])
        rows.append(rng.permutation(row))
    return np.array(rows)


def as_rows(moved):
    return list(zip(moved.received.tolist(), moved.intra_node.tolist(),
                    moved.inter_node.tolist(), moved.local.tolist(), moved.seconds.tolist()))


def test_a_small_rebalance_counted_by_hand():
    """Two nodes of two 2-slot GPUs. GPU 2 gets expert 2 (GPU 3 of its node held it), GPU 3
    gets expert 1 (GPU 2 held it): two weights, both intra-node; GPU 0's second copy of
    expert 0 and GPU 2's slot 5 (expert 1 was there already) are local rewrites."""
    topo = eb.Topology(8, 2, 2, 4)
    old = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    new = np.array([0, 0, 2, 3, 1, 2, 1, 3])
    moved = eb.migration(old, new, topo)
    assert as_rows(moved)[0][:4] == (2, 2, 0, 2)
    assert moved.bytes.tolist() == [2 * DEEPSEEK_V3_EXPERT_BYTES]
    assert moved.seconds.tolist() == [DEEPSEEK_V3_EXPERT_BYTES / NVLINK_BYTES_PER_SECOND]


def test_a_weight_no_gpu_of_the_node_held_crosses_nodes():
    topo = eb.Topology(8, 2, 2, 4)
    old = np.array([0, 1, 0, 1, 2, 3, 2, 3])
    new = np.array([2, 1, 0, 1, 0, 3, 2, 3])  # expert 2 to node 0, expert 0 to node 1
    moved = eb.migration(old, new, topo, expert_bytes=10, intra_bandwidth=5.0,
                         inter_bandwidth=2.0)
    assert as_rows(moved) == [(2, 0, 2, 0, 5.0)]
    assert moved.bytes.tolist() == [20]


@pytest.mark.parametrize("shape", [(6, 1, 1, 2), (8, 2, 2, 4), (12, 4, 2, 4), (16, 4, 4, 8)])
def test_random_rebalances_match_the_definitions(shape):
    rng = np.random.default_rng(sum(shape))
    topo = eb.Topology(*shape)
    for num_experts in range(2, topo.num_replicas + 1, 2):
        old, new = (random_plan(rng, 3, num_experts, topo) for _ in range(2))
        sizes = dict(expert_bytes=int(rng.integers(1, 10**9)),
                     intra_bandwidth=float(rng.uniform(1, 100)),
                     inter_bandwidth=float(rng.uniform(1, 100)))
        moved = eb.migration(old, new, topo, **sizes)
        want = by_definition(old, new, topo, *sizes.values())
        assert [row[:4] for row in as_rows(moved)] == [row[:4] for row in want]
        assert moved.seconds.tolist() == pytest.approx([row[4] for row in want])
        assert (moved.bytes == moved.received * sizes["expert_bytes"]).all()


def test_staying_put_and_reordering_within_a_gpu_move_nothing():
    rng = np.random.default_rng(2)
    topo = eb.Topology(16, 4, 2, 4)
    plan = random_plan(rng, 2, 10, topo)
    shuffled = np.concatenate([rng.permutation(gpu) for gpu in plan.reshape(-1, 4)])
    for new in (plan, shuffled.reshape(plan.shape)):
        moved = eb.migration(plan, new, topo)
        assert moved.received.tolist() == [0, 0] and moved.seconds.tolist() == [0.0, 0.0]
    assert eb.migration(plan, shuffled.reshape(plan.shape), topo).local.sum() == (
        (plan != shuffled.reshape(plan.shape)).sum())


def test_plans_may_be_tensors_of_any_integer_dtype():
    topo = eb.Topology(8, 2, 2, 4)
    old = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]], dtype=torch.int32)
    new = np.array([[3, 1, 2, 0, 0, 1, 2, 3]], dtype=np.uint8)
    assert as_rows(eb.migration(old, new, topo))[0][:4] == (2, 2, 0, 0)


def test_a_one_dimensional_tensor_is_one_layer():
    topo = eb.Topology(4, 1, 1, 2)
    moved = eb.migration(torch.tensor([0, 1, 2, 3]), torch.tensor([2, 1, 0, 3]), topo)
    assert as_rows(moved) == as_rows(eb.migration(np.array([[0, 1, 2, 3]]),
                                                  np.array([[2, 1, 0, 3]]), topo))


@pytest.mark.parametrize("old, reason, words", [
    ([0, 1, 2, 3], "type", "old phy2log is a list, not a tensor"),
    (np.array(3), "shape", "old phy2log has shape [], expected [1, 4]"),
    (np.zeros((0, 4), dtype=np.int64), "range", "old phy2log holds negative ids or none"),
])
def test_a_plan_that_is_no_array_of_ids_is_named(old, reason, words):
    with pytest.raises(eb.InvalidPlacement) as error:
        eb.migration(old, np.array([0, 1, 2, 3]), eb.Topology(4, 1, 1, 2))
    assert error.value.reason == reason and words in error.value.detail


@pytest.mark.parametrize("old, new, reason, words", [
    ([0, 1, 2, 3], [0, 1, 3, 3], "missing_expert", "new phy2log leaves expert 2 of layer 0"),
    ([0, 1, 2, -1], [0, 1, 2, 3], "range", "old phy2log holds negative ids"),
    ([0, 1, 2, 3], [0, 1, 2, 3, 0, 1], "shape", "new phy2log has shape [1, 6], expected [1, 4]"),
    ([0, 1, 2, 3], [0, 1, 2, 2.0], "dtype", "new phy2log has dtype float64"),
    ([0, 1, 2, 3], [0, 1, 0, 1], "mismatch", "old phy2log holds 4 experts in 1 layer(s), "
                                             "new phy2log 2 in 1"),
    ([[0, 1, 2, 3]] * 2, [0, 1, 2, 3], "mismatch", "4 experts in 2 layer(s), new phy2log 4 in 1"),
])
def test_a_plan_that_is_not_a_placement_is_named(old, new, reason, words):
    with pytest.raises(eb.InvalidPlacement) as error:
        eb.migration(np.array(old), np.array(new), eb.Topology(4, 1, 1, 2))
    assert error.value.reason == reason and words in error.value.detail
