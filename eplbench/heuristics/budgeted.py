"""`budgeted@K` (ours): from the plan in place, at most K weights received per layer, spent
on the moves that lower the layer's max GPU load the most per weight received.

Two kinds of move, each around the busiest GPU: a *rewrite* puts another expert in one slot
(the replica leaving belongs to an expert with another replica left): the busiest GPU's
slots may take any expert, any slot may take an expert the busiest GPU holds (more
replicas of it, less load on it); a *swap* exchanges the experts of a slot of the busiest
GPU and a slot of another GPU. A GPU receives a weight when it gets an expert it did not
hold (a rewrite to an expert the GPU holds is a free local copy). An expert only ever
arrives on a node that already holds it, so a plan that keeps each group on one node still
does. Each step takes the move with the largest max-load reduction per weight received (a
free move counts as half a weight); where no move lowers the max, the one that lowers the
sum of squared GPU loads most per weight at the same max (so a GPU tied at the max can be
relieved); it stops when no move improves or the budget is spent. Loads are float64 for the
choice; the checker scores the result exactly.

Without a plan in place (the engines' five-argument call), DeepSeek's placement.
"""

from __future__ import annotations

import numpy as np
import torch

from eplbench.heuristics.deepseek_fast import rebalance_experts as deepseek
from eplbench.migration import on_node
from eplbench.problem import Topology

# weights received per layer and rebalance when no @K is given
DEFAULT_BUDGET = 16
# relative improvement below which a move is float noise, not a gain
TOLERANCE = 1e-9


def rebalance_experts(weight, num_replicas: int, num_groups: int, num_nodes: int,
                      num_gpus: int, old_phy2log=None, budget: int = DEFAULT_BUDGET):
    """phy2log [L, P] int64: `old_phy2log` ([L, P], the plan in place) improved layer by
    layer within `budget` weights received; DeepSeek's (phy2log, log2phy, logcnt) when there
    is no plan in place. weight: [L, E] token counts."""
    if old_phy2log is None:
        return deepseek(torch.as_tensor(weight), num_replicas, num_groups, num_nodes, num_gpus)
    loads = torch.as_tensor(weight).double().numpy()
    plan = torch.as_tensor(old_phy2log).to(torch.int64).numpy().copy()
    topo = Topology(num_replicas, num_groups, num_nodes, num_gpus)
    for layer in range(plan.shape[0]):
        improve_layer(loads[layer], plan[layer], topo, budget)
    return torch.from_numpy(plan)


def improve_layer(weight: np.ndarray, phy2log: np.ndarray, topo: Topology,
                  budget: int) -> None:
    """Apply moves to `phy2log` ([P] expert ids, changed in place) while one improves and the
    weights received stay within `budget`. weight: [E] float64 tokens."""
    gpu_of_slot = np.arange(topo.num_replicas) // topo.slots_per_gpu
    spent = 0
    while True:
        held = np.zeros((topo.num_gpus, len(weight)))  # [G, E] replicas of each expert per GPU
        np.add.at(held, (gpu_of_slot, phy2log), 1)
        gpu_node_held = on_node((held > 0)[None], topo)[0]  # [G, E] on the GPU's node
        gpu_loads = held @ (weight / held.sum(0))
        busiest = int(np.argmax(gpu_loads))
        moves = [kind(weight, phy2log, held, gpu_node_held, gpu_loads, gpu_of_slot, busiest)
                 for kind in (_rewrites, _swaps)]
        slots, experts, peaks, spreads, costs = (np.concatenate(column) for column in zip(*moves))
        best = _choose(gpu_loads, peaks, spreads, np.where(costs <= budget - spent, costs, -1))
        if best is None:
            return
        spent += int(costs[best])
        phy2log[slots[best]] = experts[best]


def _choose(gpu_loads, peaks, spreads, costs) -> int | None:
    """Index of the move to make (module docstring), or None; costs -1: over the budget."""
    per_weight = np.maximum(costs, 0.5)
    peak, spread = gpu_loads.max(), np.square(gpu_loads).sum()
    affordable = costs >= 0
    gains = np.where(affordable, (peak - peaks) / per_weight, 0)
    if gains.size and gains.max() > TOLERANCE * peak:
        return int(np.argmax(gains))
    smoother = np.where(affordable & (peaks <= peak), (spread - spreads) / per_weight, 0)
    if smoother.size and smoother.max() > TOLERANCE * spread:
        return int(np.argmax(smoother))
    return None


def _rewrites(weight, phy2log, held, gpu_node_held, gpu_loads, gpu_of_slot, busiest: int):
    """Rewrites allowed around `busiest`: ([M, 2] slots, [M, 2] new experts, [M] max load,
    [M] sum of squared loads, [M] weights received after each); a rewrite names its slot
    and expert twice, to share the form of a swap."""
    num_slots, num_experts = len(phy2log), held.shape[1]
    mine, its_experts = np.flatnonzero(gpu_of_slot == busiest), np.flatnonzero(held[busiest])
    slots = np.concatenate([np.repeat(mine, num_experts),
                            np.repeat(np.arange(num_slots), len(its_experts))])
    experts = np.concatenate([np.tile(np.arange(num_experts), len(mine)),
                              np.tile(its_experts, num_slots)])
    counts, gpus, leaving = held.sum(0), gpu_of_slot[slots], phy2log[slots]
    allowed = (experts != leaving) & (counts[leaving] >= 2) & gpu_node_held[gpus, experts]
    slots, experts, gpus, leaving = slots[allowed], experts[allowed], gpus[allowed], leaving[allowed]
    leaving_change = weight[leaving] / (counts[leaving] - 1) - weight[leaving] / counts[leaving]
    coming_after = weight[experts] / (counts[experts] + 1)
    coming_change = coming_after - weight[experts] / counts[experts]
    loads = (gpu_loads[None, :] + held[:, leaving].T * leaving_change[:, None]
             + held[:, experts].T * coming_change[:, None])  # [M, G]
    loads[np.arange(len(slots)), gpus] += coming_after - weight[leaving] / (counts[leaving] - 1)
    costs = (held[gpus, experts] == 0).astype(np.int64)
    return (np.stack([slots, slots], 1), np.stack([experts, experts], 1), loads.max(1),
            np.square(loads).sum(1), costs)


def _swaps(weight, phy2log, held, gpu_node_held, gpu_loads, gpu_of_slot, busiest: int):
    """Swaps of a slot of `busiest` with a slot of another GPU, in `_rewrites`' form."""
    mine = np.flatnonzero(gpu_of_slot == busiest)
    others = np.flatnonzero(gpu_of_slot != busiest)
    first, second = np.repeat(mine, len(others)), np.tile(others, len(mine))
    a, b = phy2log[first], phy2log[second]
    gpus = gpu_of_slot[second]
    allowed = (a != b) & gpu_node_held[busiest, b] & gpu_node_held[gpus, a]
    first, second, a, b, gpus = (x[allowed] for x in (first, second, a, b, gpus))
    replica = weight / held.sum(0)
    change = replica[b] - replica[a]
    loads = np.repeat(gpu_loads[None, :], len(first), axis=0)
    rows = np.arange(len(first))
    loads[rows, busiest] += change
    loads[rows, gpus] -= change
    costs = (held[busiest, b] == 0).astype(np.int64) + (held[gpus, a] == 0)
    return (np.stack([first, second], 1), np.stack([b, a], 1), loads.max(1),
            np.square(loads).sum(1), costs)
