"""DeepSeek EPLB with unique experts per GPU, as an engine that needs them would write it.

Two changes to DeepSeek's stages within a node, nothing else:
- D'Hondt stops giving an expert replicas once it has one per GPU of the node;
- the LPT packing skips a GPU that already holds the item's expert (the lightest GPU with
  room that does not; if every GPU with room holds it, the lightest with room, and the
  checker then reports the co-located replica).
Groups go to nodes as in DeepSeek's hierarchical placement. Where a node's slots exceed
one replica of each expert per GPU (more slots than experts x GPUs), no placement keeps
experts apart: D'Hondt is then not capped, and the packing co-locates only what it must.
"""

from __future__ import annotations

import numpy as np
import torch

from eplbench.heuristics.deepseek import rebalance_placed
from eplbench.heuristics.deepseek_fast import (balanced_packing_vectorised, dhondt,
                                               greedy_packing, torch_descending)


def place_distinct(node_weight: torch.Tensor, num_phy: int, num_packs: int):
    """DeepSeek's replicate-then-pack within a node (a `deepseek.Placement`), distinct.

    Args:
        node_weight: [X, n] float32 loads of one node's experts per row.
        num_phy: the node's slots; num_packs: its GPUs.
    Returns:
        replica2local, replica_rank [X, num_phy], local_count [X, n], gpu_of_replica,
        rank_on_gpu [X, num_phy], all int64 (as `deepseek.replicate_then_pack`).
    """
    num_log = node_weight.shape[-1]
    cap = num_packs if num_phy <= num_log * num_packs else None
    weight = node_weight.float().numpy()
    replica2local, replica_rank, local_count = dhondt(weight, num_phy, max_count=cap)
    replica_load = np.take_along_axis(weight / local_count.astype(np.float32), replica2local, 1)
    gpu_of_replica, rank_on_gpu = greedy_packing(replica_load, num_packs, torch_descending,
                                                 labels=replica2local)
    return (*map(torch.from_numpy, (replica2local, replica_rank, local_count)),
            gpu_of_replica, rank_on_gpu)


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """DeepSeek EPLB with distinct experts per GPU. Arguments and returns as
    `deepseek.rebalance_experts`."""
    return rebalance_placed(balanced_packing_vectorised, place_distinct, weight, num_replicas,
                            num_groups, num_nodes, num_gpus)
