"""DeepSeek EPLB with the packing vectorised across rows: same output as `deepseek`, ties included.

The greedy still walks the items in sorted order (it is sequential by nature), but each step
handles every row at once, so the Python loop runs n times instead of X * n * packs.
"""

import torch

from eplbench.heuristics.deepseek import descending_order, one_item_per_pack, rebalance_with


def balanced_packing_vectorised(weight: torch.Tensor, num_packs: int):
    """Same contract and result as `deepseek.balanced_packing`.

    Args:
        weight: [X, n] float32 item weights; n is a multiple of num_packs.
    Returns:
        pack_index [X, n] int64, rank_in_pack [X, n] int64.
    """
    num_rows, num_items = weight.shape
    capacity = num_items // num_packs
    if capacity == 1:
        return one_item_per_pack(weight)
    order = descending_order(weight)
    columns = weight.float().gather(1, order).t().contiguous()  # [n, X], largest first
    # open_load: a pack's float32 load while it has room, +inf once full (flat [X * packs])
    open_load = torch.zeros(num_rows * num_packs, dtype=torch.float32)
    filled = torch.zeros(num_rows * num_packs, dtype=torch.int64)
    # what the item that brings a pack to `rank + 1` items adds on top of its weight
    full_penalty = torch.zeros(capacity, dtype=torch.float32)
    full_penalty[-1] = float("inf")
    row_start = torch.arange(num_rows) * num_packs
    ones = torch.ones(num_rows, dtype=torch.int64)
    chosen, ranks = [], []
    for column in columns:
        flat = row_start + open_load.view(num_rows, num_packs).argmin(1)
        rank = filled.take(flat)
        filled.index_add_(0, flat, ones)
        open_load.index_add_(0, flat, column + full_penalty.take(rank))
        chosen.append(flat - row_start)
        ranks.append(rank)
    chosen = torch.stack(chosen, 1)
    rank = torch.stack(ranks, 1)
    pack_index = torch.empty_like(chosen).scatter_(1, order, chosen)
    rank_in_pack = torch.empty_like(rank).scatter_(1, order, rank)
    return pack_index, rank_in_pack


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """DeepSeek EPLB, vectorised packing. Arguments and returns as `deepseek.rebalance_experts`."""
    return rebalance_with(balanced_packing_vectorised, weight, num_replicas, num_groups,
                          num_nodes, num_gpus)
