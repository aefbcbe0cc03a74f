"""Rebalance cost (spec §11): the expert weights a new plan makes the engine copy, given the
plan in place.

Per layer, a GPU *receives* expert e when it holds e in the new plan and held it nowhere in
its slots before; further copies of e on that GPU are local copies. A received weight comes
*intra-node* when some GPU of the same node held e in the old plan (NVLink), else
*inter-node* (the network). Slots whose expert changes without a weight arriving (the GPU
already held it, or it is a further copy) are *local*.

The modelled transfer time of a layer is that of its busiest receiving GPU: every GPU pulls
its weights at once, each over its own links, so a layer takes
`max over GPUs of (intra bytes / intra bandwidth + inter bytes / inter bandwidth)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eplbench.checker import check_plan_pair
from eplbench.problem import Topology

# One DeepSeek-V3 routed expert: gate, up and down projections of 7168 x 2048 FP8 weights
# (hidden size 7168, MoE intermediate size 2048, one byte a weight; block scales left out).
DEEPSEEK_V3_EXPERT_BYTES = 3 * 7168 * 2048
# The DeepSeek-V3 technical report's figures for its H800 cluster: NVLink 160 GB/s within a
# node, InfiniBand 50 GB/s a GPU across nodes.
NVLINK_BYTES_PER_SECOND = 160e9
INFINIBAND_BYTES_PER_SECOND = 50e9


@dataclass
class Migration:
    """What a rebalance from one plan to another copies, per layer (all arrays [L]).

    Attributes:
        received: int64 weights received (GPU, expert) pairs new to their GPU.
        intra_node: int64 of them some GPU of the same node held before.
        inter_node: int64 the rest (received - intra_node).
        local: int64 slots rewritten without a weight arriving.
        bytes: int64 received x the expert size, bytes.
        seconds: float64 modelled transfer time of the busiest receiving GPU, seconds.
    """

    received: np.ndarray
    intra_node: np.ndarray
    inter_node: np.ndarray
    local: np.ndarray
    bytes: np.ndarray
    seconds: np.ndarray


def migration(old_phy2log, new_phy2log, topo: Topology, *,
              expert_bytes: int = DEEPSEEK_V3_EXPERT_BYTES,
              intra_bandwidth: float = NVLINK_BYTES_PER_SECOND,
              inter_bandwidth: float = INFINIBAND_BYTES_PER_SECOND) -> Migration:
    """The cost of replacing `old_phy2log` by `new_phy2log` ([L, P] or [P] expert ids, both
    placements of the same experts on `topo`); bandwidths in bytes per second.

    Raises InvalidPlacement (naming the plan) when either is not a placement or they hold
    different experts or layers.
    """
    old, new = check_plan_pair(old_phy2log, new_phy2log, topo)
    num_experts = int(old.max()) + 1
    old_held, new_held = (held_experts(plan, topo, num_experts) for plan in (old, new))
    arriving = new_held & ~old_held  # [L, G, E]
    from_node = arriving & on_node(old_held, topo)
    intra_per_gpu = from_node.sum(-1)  # [L, G]
    inter_per_gpu = arriving.sum(-1) - intra_per_gpu
    received = (intra_per_gpu + inter_per_gpu).sum(-1)
    seconds = (intra_per_gpu * (expert_bytes / intra_bandwidth)
               + inter_per_gpu * (expert_bytes / inter_bandwidth)).max(-1)
    return Migration(received=received, intra_node=intra_per_gpu.sum(-1),
                     inter_node=inter_per_gpu.sum(-1),
                     local=(old != new).sum(-1) - received,
                     bytes=received * int(expert_bytes), seconds=seconds.astype(np.float64))


def held_experts(plan: np.ndarray, topo: Topology, num_experts: int) -> np.ndarray:
    """[L, G, E] bool: whether GPU g holds expert e in layer l; plan: [L, P] ids."""
    num_layers = plan.shape[0]
    held = np.zeros((num_layers, topo.num_gpus, num_experts), dtype=bool)
    gpu_of_slot = np.arange(topo.num_replicas) // topo.slots_per_gpu
    held[np.arange(num_layers)[:, None], gpu_of_slot[None, :], plan] = True
    return held


def on_node(held: np.ndarray, topo: Topology) -> np.ndarray:
    """[L, G, E] bool: whether some GPU of g's node holds e, from `held` ([L, G, E])."""
    num_layers, _, num_experts = held.shape
    per_node = held.reshape(num_layers, topo.num_nodes, topo.gpus_per_node, num_experts)
    return np.repeat(per_node.any(2), topo.gpus_per_node, axis=1)
