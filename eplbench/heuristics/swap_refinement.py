"""Packing-stage fix-ups from the seeds: bounded swaps between the heaviest and a light pack.

After a greedy packing, up to `steps` times per row: take the heaviest pack h and a light
pack l (delta = load_h - load_l), and among candidate pairs (i in h, j in l) the swap whose
new difference |delta - 2 (w_i - w_j)| is smallest; apply it when that is below delta (then
both packs end strictly between their old loads, so the maximum never rises). With two
light packs the pair with the smaller new difference is chosen first and applied only if it
improves, as seed 003 does. Rows stop at the first step that finds no improving swap. Candidates, as the seeds name them:

- `nearest`: every pair (the parents of seeds 002 and 003 search, for each heavy item, the
  light item nearest to w_i - delta / 2, which finds the same best pair);
- `top2`: the 2 heaviest items of h against the 2 lightest of l (seed 002);
- `two_light`: every pair, against the lightest and the second-lightest pack, the smaller new
  difference wins (seed 003).

Every row is handled at once (numpy over [rows, packs, items per pack]). A swapped item takes
the other's place in its pack; the seeds renumber places in the two packs instead, which
changes the slot order inside a GPU but no load.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

# a swap must lower the difference by more than this (tokens); the seeds use 1e-9
TOLERANCE = 1e-9
MODES = ("nearest", "top2", "two_light")


def refined(packing, mode: str, steps: int = 2):
    """A packing function (DeepSeek's contract) that runs `packing`, then the swaps."""
    if mode not in MODES:
        raise ValueError(f"unknown swap refinement {mode!r}; known: {', '.join(MODES)}")
    return partial(pack_then, partial(refine, mode=mode, steps=steps), packing)


def pack_then(improve, packing, weight: torch.Tensor, num_packs: int):
    """DeepSeek's packing contract: `packing`, then `improve(weight [X, n] float64, members
    [X, packs, k])` in place on the packs' members (skipped with one item per pack)."""
    pack_index, rank_in_pack = packing(weight, num_packs)
    if weight.shape[1] // num_packs < 2:
        return pack_index, rank_in_pack
    members = members_of(pack_index.numpy(), rank_in_pack.numpy(), num_packs)
    improve(weight.double().numpy(), members)
    return index_and_rank(members, weight.shape[1])


def item_weights(weight: np.ndarray, members: np.ndarray) -> np.ndarray:
    """[X, packs, k] the weight of every pack member; weight: [X, n]."""
    return np.take_along_axis(weight[:, None, :], members, axis=2)


def members_of(pack_index: np.ndarray, rank: np.ndarray, num_packs: int) -> np.ndarray:
    """[X, packs, per_pack] item ids from pack_index and rank ([X, n] each)."""
    num_rows, num_items = pack_index.shape
    members = np.empty((num_rows, num_packs, num_items // num_packs), dtype=np.int64)
    rows = np.repeat(np.arange(num_rows), num_items)
    members[rows, pack_index.ravel(), rank.ravel()] = np.tile(np.arange(num_items), num_rows)
    return members


def index_and_rank(members: np.ndarray, num_items: int):
    """(pack_index [X, n], rank_in_pack [X, n]) as int64 tensors, from members."""
    num_rows, num_packs, per_pack = members.shape
    pack_index = np.empty((num_rows, num_items), dtype=np.int64)
    rank = np.empty((num_rows, num_items), dtype=np.int64)
    rows = np.repeat(np.arange(num_rows), num_packs * per_pack)
    flat = members.ravel()
    pack_index[rows, flat] = np.repeat(np.tile(np.arange(num_packs), num_rows), per_pack)
    rank[rows, flat] = np.tile(np.arange(per_pack), num_rows * num_packs)
    return torch.from_numpy(pack_index), torch.from_numpy(rank)


def refine(weight: np.ndarray, members: np.ndarray, mode: str, steps: int) -> None:
    """Apply up to `steps` improving swaps per row, in place on members ([X, packs, k]).
    weight: [X, n] item weights."""
    rows = np.arange(weight.shape[0])
    active = np.ones(len(rows), dtype=bool)
    for _ in range(steps):
        item_weight = item_weights(weight, members)
        loads = item_weight.sum(axis=2)  # [X, packs]
        heavy = loads.argmax(axis=1)
        order = np.argsort(loads, axis=1, kind="stable")
        lights = [order[:, 0]] + ([order[:, 1]] if mode == "two_light" and order.shape[1] > 1
                                  else [])
        best = None
        for light in lights:
            move = _best_swap(item_weight, loads, rows, heavy, light, mode)
            new = np.where((light != heavy) & (move[1] > TOLERANCE), move[0], np.inf)
            if best is None:
                best = (new, move[1], light, move[2], move[3])
            else:  # the smaller new difference wins, the lightest pack on ties
                better = new < best[0]
                best = tuple(np.where(better, candidate, kept)
                             for candidate, kept in zip((new, move[1], light, *move[2:]), best))
        active &= best[0] < best[1] - TOLERANCE
        if not active.any():
            return
        _swap(members, rows[active], heavy[active], best[2][active], best[3][active],
              best[4][active])


def _best_swap(item_weight, loads, rows, heavy, light, mode):
    """(new difference, old difference, place in heavy, place in light), each [X]: the best
    candidate swap between the heavy and the light pack of every row."""
    heavy_items = item_weight[rows, heavy]  # [X, k]
    light_items = item_weight[rows, light]
    delta = loads[rows, heavy] - loads[rows, light]
    new = np.abs(delta[:, None, None] - 2 * (heavy_items[:, :, None] - light_items[:, None, :]))
    if mode == "top2":
        keep_heavy = _ranked_mask(-heavy_items, 2)
        keep_light = _ranked_mask(light_items, 2)
        new = np.where(keep_heavy[:, :, None] & keep_light[:, None, :], new, np.inf)
    per_pack = heavy_items.shape[1]
    flat = new.reshape(len(rows), -1).argmin(axis=1)
    return new.reshape(len(rows), -1)[rows, flat], delta, flat // per_pack, flat % per_pack


def _ranked_mask(values: np.ndarray, count: int) -> np.ndarray:
    """[X, k] True for the `count` smallest values of each row (first on ties)."""
    order = np.argsort(values, axis=1, kind="stable")[:, :count]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _swap(members, rows, heavy, light, heavy_place, light_place) -> None:
    heavy_item = members[rows, heavy, heavy_place].copy()
    members[rows, heavy, heavy_place] = members[rows, light, light_place]
    members[rows, light, light_place] = heavy_item
