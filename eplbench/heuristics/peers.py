"""Variants from the peers' engines, on DeepSeek's replication.

- `zigzag` (SGLang's `deepseek_vec`, also the ADRS evolved program): groups go to nodes by
  DeepSeek's greedy; within a node the replicas, sorted by load, are dealt to the GPUs in a
  serpentine (GPU 0, 1, .., G-1, then G-1, .., 0, ...). No search at all. SGLang breaks
  D'Hondt ties towards the higher expert id; here DeepSeek's tie order is kept.
- `swift_swaps` (vllm-ascend's SwiftBalancer, without a current placement to stay close to):
  after DeepSeek's packing, rows whose max / mean pack load is at least 1.01 swap items
  between the heaviest pack and the first pack, lightest first, where the best swap lowers
  the pair's larger load by at least 1% of the mean pack load; each pair of packs swaps at
  most once and an item swapped in is not swapped again; at most 100 swaps. SwiftBalancer
  also refuses a swap that would put two replicas of one expert on a GPU; the packing stage
  sees only replica loads, so that rule is not applied.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from eplbench.heuristics.deepseek import descending_order, rebalance_with
from eplbench.heuristics.deepseek_fast import (balanced_packing_vectorised,
                                               replicate_experts_vectorised)
from eplbench.heuristics.swap_refinement import item_weights, pack_then

IMBALANCE_THRESHOLD = 1.01
GAIN_SHARE = 0.01
MAX_SWAPS = 100


def serpentine_packing(weight: torch.Tensor, num_packs: int):
    """DeepSeek's packing contract: weight [X, n] -> (pack_index, rank_in_pack), [X, n]."""
    order = descending_order(weight)
    position = torch.arange(weight.shape[1])
    lap, offset = position // num_packs, position % num_packs
    pack = torch.where(lap % 2 == 0, offset, num_packs - 1 - offset).expand_as(order)
    pack_index = torch.empty_like(order).scatter_(1, order, pack.contiguous())
    rank_in_pack = torch.empty_like(order).scatter_(1, order, lap.expand_as(order).contiguous())
    return pack_index, rank_in_pack


def swift_swaps(weight: np.ndarray, members: np.ndarray) -> None:
    """In place on members [X, packs, k]; weight: [X, n]."""
    num_rows, num_packs, _ = members.shape
    mean = weight.sum(axis=1) / num_packs
    loads = item_weights(weight, members).sum(axis=2)
    active = loads.max(axis=1) >= IMBALANCE_THRESHOLD * mean
    paired = np.zeros((num_rows, num_packs, num_packs), dtype=bool)
    swapped_in = np.zeros(weight.shape, dtype=bool)
    for _ in range(MAX_SWAPS):
        rows = np.flatnonzero(active)
        if not len(rows):
            return
        found = _first_good_swap(weight[rows], members[rows], paired[rows], swapped_in[rows],
                                 GAIN_SHARE * mean[rows])
        active[rows[~found[0]]] = False
        rows = rows[found[0]]
        heavy, partner, heavy_place, partner_place = (part[found[0]] for part in found[1:])
        heavy_item = members[rows, heavy, heavy_place]
        partner_item = members[rows, partner, partner_place]
        members[rows, heavy, heavy_place] = partner_item
        members[rows, partner, partner_place] = heavy_item
        swapped_in[rows, heavy_item] = swapped_in[rows, partner_item] = True
        paired[rows, heavy, partner] = paired[rows, partner, heavy] = True


def _first_good_swap(weight, members, paired, swapped_in, min_gain):
    """(found [R], heavy, partner, place in heavy, place in partner): per row, the best swap
    with the first partner (lightest first) whose best swap gains at least min_gain."""
    rows = np.arange(len(weight))
    item_weight = item_weights(weight, members)
    movable = ~np.take_along_axis(swapped_in[:, None, :], members, axis=2)
    loads = item_weight.sum(axis=2)
    order = np.argsort(loads, axis=1, kind="stable")
    heavy = order[:, -1]
    gain = item_weight[rows, heavy][:, None, :, None] - item_weight[:, :, None, :]
    pair_max = np.maximum(loads[rows, heavy][:, None, None, None] - gain,
                          loads[:, :, None, None] + gain)
    allowed = (movable[rows, heavy][:, None, :, None] & movable[:, :, None, :]
               & ~paired[rows, heavy][:, :, None, None])
    pair_max = np.where(allowed, pair_max, np.inf)
    pair_max[rows, heavy] = np.inf
    per_pack = members.shape[2]
    best_place = pair_max.reshape(len(rows), loads.shape[1], -1).argmin(axis=2)  # [R, packs]
    best = np.take_along_axis(pair_max.reshape(len(rows), loads.shape[1], -1),
                              best_place[:, :, None], axis=2)[:, :, 0]
    good = loads[rows, heavy][:, None] - best >= min_gain[:, None]
    good_in_order = np.take_along_axis(good, order, axis=1)
    first = order[rows, good_in_order.argmax(axis=1)]
    found = good_in_order.any(axis=1)
    place = best_place[rows, first]
    return found, heavy, first, place // per_pack, place % per_pack


zigzag = partial(rebalance_with, serpentine_packing, replicate_experts_vectorised,
                 group_packing=balanced_packing_vectorised)
# DeepSeek's packing, then SwiftBalancer's bounded swaps (module docstring)
swift_packing = partial(pack_then, swift_swaps, balanced_packing_vectorised)
swift = partial(rebalance_with, swift_packing, replicate_experts_vectorised)
