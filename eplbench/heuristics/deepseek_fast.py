"""DeepSeek EPLB with both greedy stages vectorised across rows: same output as `deepseek`,
ties included.

The greedies stay sequential in their items (that is their nature), but each step handles
every row (layer, or layer x node) at once, so the Python loop runs n times instead of
X * n * packs. The per-step kernels run on numpy arrays: on tensors of a few hundred
elements, a numpy call costs ~1-2 us against ~4-6 us for the same torch call, and the
float32 arithmetic and first-index tie-breaking are identical. Sorting stays with torch,
whose (unstable) tie order is part of the reference's output.
"""

import numpy as np
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
    columns = weight.float().gather(1, order).t().contiguous().numpy()  # [n, X], largest first
    # open_load: a pack's float32 load while it has room, +inf once full (flat [X * packs])
    open_load = np.zeros(num_rows * num_packs, dtype=np.float32)
    by_row = open_load.reshape(num_rows, num_packs)
    filled = np.zeros(num_rows * num_packs, dtype=np.int64)
    # added on top of the item that brings a pack to rank + 1 items: +inf when that fills it
    full_penalty = np.zeros(capacity, dtype=np.float32)
    full_penalty[-1] = np.inf
    row_start = np.arange(num_rows) * num_packs
    chosen = np.empty((num_items, num_rows), dtype=np.int64)
    ranks = np.empty((num_items, num_rows), dtype=np.int64)
    for position in range(num_items):
        flat = row_start + by_row.argmin(1)  # argmin takes the first of equal loads
        rank = filled[flat]
        filled[flat] = rank + 1
        open_load[flat] += columns[position] + full_penalty[rank]
        chosen[position] = flat - row_start
        ranks[position] = rank
    pack_index = torch.empty_like(order).scatter_(1, order, torch.from_numpy(chosen.T.copy()))
    rank_in_pack = torch.empty_like(order).scatter_(1, order, torch.from_numpy(ranks.T.copy()))
    return pack_index, rank_in_pack


def replicate_experts_vectorised(weight: torch.Tensor, num_phy: int):
    """Same contract and result as `deepseek.replicate_experts` (D'Hondt).

    Args:
        weight: [X, num_log] float32 loads.
    Returns:
        phy2log [X, num_phy], rank [X, num_phy], logcnt [X, num_log], all int64.
    """
    num_rows, num_log = weight.shape
    values = weight.float().numpy().ravel()
    per_replica = values.copy()  # weight / count in float32, as the reference divides
    count = np.ones(num_rows * num_log, dtype=np.int64)
    row_start = np.arange(num_rows) * num_log
    phy2log = np.empty((num_rows, num_phy), dtype=np.int64)
    phy2log[:, :num_log] = np.arange(num_log)
    rank = np.zeros((num_rows, num_phy), dtype=np.int64)
    for slot in range(num_log, num_phy):
        flat = row_start + per_replica.reshape(num_rows, num_log).argmax(1)  # first maximum
        rank[:, slot] = count[flat]
        count[flat] += 1
        per_replica[flat] = values[flat] / count[flat].astype(np.float32)
        phy2log[:, slot] = flat - row_start
    return (torch.from_numpy(phy2log), torch.from_numpy(rank),
            torch.from_numpy(count.reshape(num_rows, num_log)))


def rebalance_experts(weight: torch.Tensor, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int):
    """DeepSeek EPLB, vectorised stages. Arguments and returns as `deepseek.rebalance_experts`."""
    return rebalance_with(balanced_packing_vectorised, replicate_experts_vectorised, weight,
                          num_replicas, num_groups, num_nodes, num_gpus)
