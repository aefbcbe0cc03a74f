"""Relabelling (spec §11): the same plan with its nodes, GPUs and slots renumbered to keep
the most expert weights where the plan in place has them.

Moving a node (with the groups it holds), a GPU within its node or a slot within its GPU
changes no GPU's load, so neither any max load nor the policy a plan respects. Per layer,
two nested assignment problems (scipy's `linear_sum_assignment`) choose the renumbering:
for every pair of a new node and an old node position, the GPUs of the new node go to the
GPU positions of the old node that receive the fewest weights, counted as in
`migration.migration` and the inter-node ones breaking ties; the nodes then go to the node
positions whose best GPU assignment costs least. Within each GPU the slots are ordered to
leave as many slots as possible holding their old expert. The fewest weights received over
all such renumberings is reached exactly.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from eplbench.checker import check_plan_pair
from eplbench.migration import held_experts, on_node
from eplbench.problem import Topology


def relabel(old_phy2log, new_phy2log, topo: Topology) -> np.ndarray:
    """int64 [L, P]: `new_phy2log` renumbered to keep the most weights of `old_phy2log` in
    place (both [L, P] or [P] placements of the same experts on `topo`)."""
    old, new = check_plan_pair(old_phy2log, new_phy2log, topo)
    num_experts = int(old.max()) + 1
    return np.stack([_relabel_layer(old_row, new_row, topo, num_experts)
                     for old_row, new_row in zip(old, new)])


def _relabel_layer(old: np.ndarray, new: np.ndarray, topo: Topology,
                   num_experts: int) -> np.ndarray:
    """[P] one layer's new plan renumbered; old, new: [P] expert ids."""
    per_node, slots = topo.gpus_per_node, topo.slots_per_gpu
    old_gpus, new_gpus = old.reshape(-1, slots), new.reshape(-1, slots)
    cost = _gpu_costs(old_gpus, new_gpus, topo, num_experts)  # [new GPU, old GPU position]
    node_cost = np.zeros((topo.num_nodes, topo.num_nodes), dtype=np.int64)
    inner = {}
    for new_node in range(topo.num_nodes):
        for old_node in range(topo.num_nodes):
            block = cost[new_node * per_node:(new_node + 1) * per_node,
                         old_node * per_node:(old_node + 1) * per_node]
            rows, cols = linear_sum_assignment(block)
            node_cost[new_node, old_node] = block[rows, cols].sum()
            inner[new_node, old_node] = cols
    placed = np.empty_like(new_gpus)
    for new_node, old_node in zip(*linear_sum_assignment(node_cost)):
        for offset, position in enumerate(inner[new_node, old_node]):
            gpu = old_node * per_node + position
            placed[gpu] = _order_slots(old_gpus[gpu], new_gpus[new_node * per_node + offset])
    return placed.reshape(-1)


def _gpu_costs(old_gpus: np.ndarray, new_gpus: np.ndarray, topo: Topology,
               num_experts: int) -> np.ndarray:
    """[G new GPUs, G old positions] int64: weights the new GPU would receive at that
    position, times (G x S + 1), plus those of them no GPU of the position's node held
    (fewest weights first, then fewest across nodes)."""
    old_held, new_held = (held_experts(gpus.reshape(1, -1), topo, num_experts)
                          for gpus in (old_gpus, new_gpus))
    position_node_held = on_node(old_held, topo)[0].astype(np.int64)
    old_held, new_held = old_held[0].astype(np.int64), new_held[0].astype(np.int64)
    received = new_held.sum(1)[:, None] - new_held @ old_held.T
    across = new_held.sum(1)[:, None] - new_held @ position_node_held.T
    return received * (topo.num_replicas + 1) + across


def _order_slots(old_slots: np.ndarray, new_slots: np.ndarray) -> np.ndarray:
    """[S] the experts of `new_slots` ordered so that most slots keep `old_slots`' expert."""
    left = list(new_slots)
    ordered = [None] * len(old_slots)
    for position, expert in enumerate(old_slots):
        if expert in left:
            left.remove(expert)
            ordered[position] = expert
    rest = iter(left)
    return np.array([next(rest) if expert is None else expert for expert in ordered])
