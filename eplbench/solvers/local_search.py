"""Swap local search on one layer's packing, in exact integer units (counts unchanged).

Repeatedly swap a replica of the most loaded GPU with a lighter replica on another GPU (of
the same node, if asked, so that the hierarchy is kept) when that lowers the first GPU and leaves the other
below the old maximum. Every accepted swap lowers the sorted load vector, so it terminates.
"""

from __future__ import annotations

import numpy as np

from eplbench.exact import scaled_slot_loads
from eplbench.problem import Topology


def improve_by_swaps(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                     within_nodes: bool, max_swaps: int = 10_000) -> np.ndarray:
    """[P] a placement no worse than `phy2log` ([P]); weight: [E] int64 tokens.
    within_nodes: swap only inside a node (keeps a hierarchical placement hierarchical)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    slot_load, _ = scaled_slot_loads(weight[None, :], phy2log[None, :], counts[None, :])
    if slot_load.dtype == object:
        return phy2log  # loads too large for int64 arithmetic: leave it as it is
    gpus, slots = topology.num_gpus, topology.slots_per_gpu
    experts = phy2log.reshape(gpus, slots).copy()
    item = slot_load[0].reshape(gpus, slots).copy()
    load = item.sum(1)
    per_node = topology.gpus_per_node if within_nodes else gpus
    node = np.arange(gpus) // per_node
    for _ in range(max_swaps):
        top = int(np.argmax(load))
        # delta[i, h, j]: what GPU `top` sheds by giving its item i for item j of GPU h
        delta = item[top][:, None, None] - item[None, :, :]
        other = load[None, :, None] + delta
        allowed = (delta > 0) & (other < load[top]) & (node == node[top])[None, :, None]
        if not allowed.any():
            break
        new_max = np.where(allowed, np.maximum(load[top] - delta, other), np.iinfo(np.int64).max)
        i, h, j = np.unravel_index(np.argmin(new_max), new_max.shape)
        item[top, i], item[h, j] = item[h, j], item[top, i]
        experts[top, i], experts[h, j] = experts[h, j], experts[top, i]
        load[top] -= delta[i, h, j]
        load[h] += delta[i, h, j]
    return experts.reshape(-1)
