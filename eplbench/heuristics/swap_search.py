"""Our heuristic: replica counts chosen with the packing in hand, a packing by rounds, and a
best-improvement swap search, on every row at once.

A row is a layer (global policy) or a layer's node (hierarchical); groups go to nodes by
steps 2-3 with one item per group. A row has n experts, N slots, G GPUs of S = N / G slots:

1. Counts: where the rows are few and small (rows x V x N <= `EXHAUSTIVE_WORK` for the V
   count vectors), every count vector is packed (steps 2-3) and the row keeps its best.
   Otherwise D'Hondt, which minimises the largest replica but not the largest GPU, then
   step 4.
2. Packing by rounds: the replicas sorted by load are dealt in blocks of G, each block
   heaviest first to the GPUs lightest so far, so every GPU gets one replica per round.
3. Swaps: up to `MAX_SWAP_STEPS` times, of the swaps between a replica on the heaviest GPU h
   and one on the `PARTNERS` lightest GPUs g, take the one that leaves
   max(load_h - x, load_g + x) smallest (x = w_i - w_j), and apply it when that is below
   load_h.
4. Count moves, up to `COUNT_ROUNDS` rounds: candidates move one slot from a donor (among
   the `DONORS` experts with two or more replicas whose load per replica would rise least)
   to a receiver (an expert on the heaviest GPU, heaviest replica first); each candidate is
   packed afresh (steps 2-3), and a row keeps the best, its current counts on ties. (Scoring
   the same moves on the current packing, without re-packing, found no improving move on
   medium-cut or the DeepSeek-V3 shape.) A round packs at most `WORK_PER_ROUND` replicas in
   all, so small problems get the full search and the DeepSeek-V3 shape (58 layers x 4
   nodes, or 58 layers of 288 slots) none: that keeps it under 5 ms with one thread.

Nothing guarantees a layer no worse than DeepSeek's, as the packing starts by rounds, not
from DeepSeek's greedy: of 3,000 random small cases (1-3 layers, 3-12 experts, 1-4 GPUs, one
node), 5 had a layer worse than DeepSeek's.

Rows whose swaps stop improving leave the arrays, so later steps cost little. Loads are
float64 (token counts of float32 weights are exact there); `TOLERANCE` keeps rounding noise
from counting as an improvement.

`swap_search_distinct` (`rebalance_experts_distinct`) keeps every GPU's experts distinct
wherever a node's slots allow it (at most one replica of each expert per GPU): counts at
most G (count vectors above it are not tried, a count move never raises one past it), a
replica that packing by rounds puts beside its own copy is swapped with the nearest-load
replica of another GPU that takes neither twice (`separate_copies`), and steps 3-4 try
only swaps that keep both GPUs distinct.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import torch

from eplbench.heuristics.deepseek import rebalance_placed
from eplbench.heuristics.deepseek_fast import dhondt
from eplbench.heuristics.replication_fixups import replica_experts

MAX_SWAP_STEPS = 24
PARTNERS = 4
DONORS = 4
COUNT_ROUNDS = 10
# replicas packed per count-move round, all rows and candidates together
WORK_PER_ROUND = 30_000
# replicas packed in all when every count vector is tried
EXHAUSTIVE_WORK = 300_000
TOLERANCE = 1e-9


def rebalance_experts(weight, num_replicas: int, num_groups: int, num_nodes: int,
                      num_gpus: int):
    """Engine signature; see `deepseek.rebalance_experts`."""
    return rebalance_placed(group_packing, place, weight, num_replicas, num_groups,
                            num_nodes, num_gpus)


def rebalance_experts_distinct(weight, num_replicas: int, num_groups: int, num_nodes: int,
                               num_gpus: int):
    """Engine signature; swap search keeping experts distinct per GPU (module docstring)."""
    return rebalance_placed(group_packing, partial(place, distinct=True), weight,
                            num_replicas, num_groups, num_nodes, num_gpus)


def group_packing(weight: torch.Tensor, num_packs: int):
    """DeepSeek's packing contract (weight [X, n] -> pack_index, rank_in_pack, [X, n]) by
    steps 2-3, for groups onto nodes."""
    values = weight.double().numpy()
    num_rows, num_items = values.shape
    replica, _ = packed(values, np.ones(values.shape, dtype=np.int64), num_packs)
    item = replica.reshape(num_rows, -1)  # one replica per item: the item's index
    slot = np.arange(num_items)
    pack_index, rank_in_pack = np.empty((2, num_rows, num_items), dtype=np.int64)
    np.put_along_axis(pack_index, item, slot // replica.shape[2], axis=1)
    np.put_along_axis(rank_in_pack, item, slot % replica.shape[2], axis=1)
    return torch.from_numpy(pack_index), torch.from_numpy(rank_in_pack)


def place(node_weight: torch.Tensor, num_phy: int, num_packs: int, distinct: bool = False):
    """A `deepseek.Placement`: node rows [X, n] float32 onto `num_packs` GPUs of
    num_phy / num_packs slots each; the replicas come back in slot order. distinct: keep
    every GPU's experts distinct where the node's slots allow it."""
    values = node_weight.double().numpy()
    num_rows, num_log = values.shape
    slots = num_phy // num_packs
    cap = num_packs if distinct and num_phy <= num_log * num_packs else None
    every = every_count_vector(num_log, num_phy, EXHAUSTIVE_WORK // (num_rows * num_phy))
    if every is not None and cap is not None:
        every = every[every.max(axis=1) <= cap]
    if slots < 2 or num_packs < 2:  # nothing to search: D'Hondt is optimal, or one GPU
        counts = dhondt(node_weight.float().numpy(), num_phy, max_count=cap)[2]
        replica, _ = packed(values, counts, num_packs, cap, swaps=False)
    elif every is not None:
        counts, replica, _ = best_count_vectors(values, np.tile(every, (num_rows, 1, 1)),
                                                num_packs, cap)
    else:
        counts = dhondt(node_weight.float().numpy(), num_phy, max_count=cap)[2]
        counts, replica = search_counts(values, counts,
                                        *packed(values, counts, num_packs, cap), cap)
    return placement_maps(replica, counts)


def packed_by_rounds(values: np.ndarray, counts: np.ndarray, num_packs: int):
    """(replica, load), both [R, G, S]: the replicas of `counts` ([R, n], rows of `values`
    [R, n] tokens) dealt by rounds (step 2); round r fills place r of every GPU. A replica
    is named by its index in expert order (`replica_experts`)."""
    num_rows = len(values)
    replica_load = np.take_along_axis(values / counts, replica_experts(counts), axis=1)
    order = by_load(replica_load, descending=True)
    replica_load = np.take_along_axis(replica_load, order, axis=1)
    num_phy = replica_load.shape[1]
    gpu = np.empty((num_rows, num_phy), dtype=np.int64)
    gpu[:, :num_packs] = np.arange(num_packs)
    total = replica_load[:, :num_packs].copy()
    rows = np.arange(num_rows)[:, None]
    for start in range(num_packs, num_phy, num_packs):
        packs = by_load(total, descending=False)
        gpu[:, start:start + num_packs] = packs
        total[rows, packs] += replica_load[:, start:start + num_packs]
    slots = num_phy // num_packs
    slot = gpu * slots + np.arange(num_phy) // num_packs
    replica = np.empty((num_rows, num_phy), dtype=np.int64)
    load = np.empty((num_rows, num_phy))
    np.put_along_axis(replica, slot, order, axis=1)
    np.put_along_axis(load, slot, replica_load, axis=1)
    return replica.reshape(num_rows, num_packs, slots), load.reshape(num_rows, num_packs, slots)


def by_load(load: np.ndarray, descending: bool) -> np.ndarray:
    """[R, N] each row's positions by load (load >= 0), equal loads by position.

    A stable sort of floats costs 3-4x numpy's default sort here, and the default sort's
    order of equal keys may differ between machines, so it gets unique int64 keys instead:
    the bits of a float >= 0 sort as the float does (inverted for descending), and their
    lowest bits give way to the position. Loads within 2^-(52 - log2 N) of each other,
    relatively, count as equal.
    """
    num_items = load.shape[1]
    position_bits = max(1, (num_items - 1).bit_length())
    bits = load.view(np.int64)
    keys = (~bits if descending else bits) & ~np.int64((1 << position_bits) - 1)
    return np.argsort(keys | np.arange(num_items), axis=1)


def search_swaps(replica: np.ndarray, load: np.ndarray, total: np.ndarray, rows: np.ndarray,
                 max_steps: int = MAX_SWAP_STEPS, owner: np.ndarray | None = None) -> None:
    """Step 3 on `rows`, in place on replica, load [R, G, S] and total [R, G].

    The pair's larger load after a swap is (load_h + load_g) / 2 + |x - (load_h - load_g) / 2|,
    so the candidates are ranked by that in float32 (the bulk of the work, [rows, partners,
    S, S]); the chosen swap is applied only if float64 says it lowers load_h. owner: [R, P]
    the expert of each replica index (`replica_experts`): only swaps that leave neither GPU
    holding an expert twice are tried (None: every swap).
    """
    partners = min(PARTNERS, total.shape[1] - 1)
    slots = load.shape[2]
    for _ in range(max_steps if partners and slots > 1 else 0):
        if not len(rows):
            return
        pack_load = total[rows]
        index = np.arange(len(rows))
        heavy = pack_load.argmax(axis=1)
        light = np.argpartition(pack_load, partners - 1, axis=1)[:, :partners]
        heavy_load = pack_load[index, heavy]
        light_load = pack_load[index[:, None], light]  # [A, partners]
        heavy_items = load[rows, heavy]  # [A, S]
        light_items = load[rows[:, None], light]  # [A, partners, S]
        aim = (heavy_items[:, None, :] - (heavy_load[:, None, None] - light_load[..., None]) / 2)
        miss = np.abs(aim.astype(np.float32)[..., None]
                      - light_items.astype(np.float32)[:, :, None, :])  # [A, partners, S, S]
        miss += (light_load.astype(np.float32) / 2)[..., None, None]
        if owner is not None:
            miss[_doubling_swaps(owner, replica, rows, heavy, light)] = np.inf
        best = miss.reshape(len(rows), -1).argmin(axis=1)
        partner_rank, heavy_place, light_place = np.unravel_index(best,
                                                                  (partners, slots, slots))
        heavy_item = heavy_items[index, heavy_place]
        light_item = light_items[index, partner_rank, light_place]
        shift = heavy_item - light_item
        after = np.maximum(heavy_load - shift, light_load[index, partner_rank] + shift)
        better = (after < heavy_load - TOLERANCE) & np.isfinite(miss.reshape(len(rows), -1)
                                                                [index, best])
        rows, index = rows[better], index[better]
        heavy_slot = (heavy[better], heavy_place[better], heavy_item[better])
        light_slot = (light[index, partner_rank[better]], light_place[better],
                      light_item[better])
        swap_slots(replica, load, total, rows, heavy_slot, light_slot)


def _doubling_swaps(owner, replica, rows, heavy, light) -> np.ndarray:
    """[A, partners, S, S] bool: swapping place i of the heavy GPU with place j of a light
    one would give either GPU an expert it already holds (or moves a copy of one expert
    for another)."""
    owners = owner[rows]
    heavy_experts = np.take_along_axis(owners, replica[rows, heavy], axis=1)  # [A, S]
    light_experts = np.take_along_axis(owners[:, None, :], replica[rows[:, None], light],
                                       axis=2)  # [A, p, S]
    heavy_on_light = (heavy_experts[:, None, :, None] == light_experts[:, :, None, :]).any(-1)
    light_on_heavy = (light_experts[..., None] == heavy_experts[:, None, None, :]).any(-1)
    return heavy_on_light[..., :, None] | light_on_heavy[..., None, :]


def separate_copies(replica: np.ndarray, load: np.ndarray, owner: np.ndarray) -> None:
    """In place on replica, load [R, G, S]: while a GPU holds an expert twice, swap the
    second copy with the replica of nearest load on another GPU such that neither GPU then
    holds an expert twice (each swap removes a double and makes none; where none is
    possible the double is left). owner: [R, P] the expert of each replica index."""
    num_rows, num_packs, slots = replica.shape
    on_gpu = np.take_along_axis(owner, replica.reshape(num_rows, -1), axis=1).reshape(
        replica.shape)  # [R, G, S] experts
    ordered = np.sort(on_gpu, axis=2)
    for row in np.flatnonzero((ordered[..., 1:] == ordered[..., :-1]).any(axis=(1, 2))):
        experts = on_gpu[row]  # [G, S], swapped below with replica and load
        for gpu in range(num_packs):
            place = _second_copy(experts[gpu])
            while place is not None:
                other = _separating_swap(experts, load[row], gpu, place)
                if other is None:
                    break
                for array in (replica[row], load[row], experts):
                    array[gpu, place], array[other] = array[other], array[gpu, place]
                place = _second_copy(experts[gpu])


def _second_copy(experts: np.ndarray):
    """The first place holding an expert an earlier place of the same GPU holds, or None."""
    seen = set()
    for place, expert in enumerate(experts.tolist()):
        if expert in seen:
            return place
        seen.add(expert)
    return None


def _separating_swap(experts: np.ndarray, load: np.ndarray, gpu: int, place: int):
    """(gpu, place) of the replica nearest in load to load[gpu, place] on another GPU that
    lacks experts[gpu, place] and whose own expert `gpu` lacks, or None."""
    takes = ~(experts == experts[gpu, place]).any(axis=1)
    takes[gpu] = False
    allowed = takes[:, None] & ~np.isin(experts, experts[gpu])
    if not allowed.any():
        return None
    miss = np.where(allowed, np.abs(load - load[gpu, place]), np.inf)
    return np.unravel_index(np.argmin(miss), miss.shape)


def swap_slots(replica, load, total, rows, first, second) -> None:
    """Exchange two slots of each row in `rows`: first = (gpu [A], place [A], load [A])."""
    first_replica = replica[rows, first[0], first[1]]
    replica[rows, first[0], first[1]] = replica[rows, second[0], second[1]]
    replica[rows, second[0], second[1]] = first_replica
    load[rows, first[0], first[1]] = second[2]
    load[rows, second[0], second[1]] = first[2]
    total[rows, first[0]] += second[2] - first[2]
    total[rows, second[0]] += first[2] - second[2]


def search_counts(values, counts, replica, load, cap: int | None = None):
    """Step 4: (counts [R, n], replica [R, G, S]) after the count-move rounds, from `counts`
    packed as `replica`, `load` [R, G, S]; cap: the most replicas of one expert, kept
    distinct per GPU (None: any)."""
    num_rows, num_packs, slots = replica.shape
    affordable = WORK_PER_ROUND // (num_rows * num_packs * slots)
    receivers = min(slots, affordable // DONORS) if affordable >= DONORS else affordable
    donors = min(DONORS, affordable // max(receivers, 1))
    peak = load.sum(axis=2).max(axis=1)
    rows = np.arange(num_rows)
    for _ in range(COUNT_ROUNDS if donors * receivers >= 2 else 0):
        heavy_experts = np.take_along_axis(replica_experts(counts),
                                           replica[rows, load.sum(axis=2).argmax(axis=1)], axis=1)
        candidates = moved_counts(values, counts, heavy_experts, donors, receivers, cap)
        best_counts, best_replica, best_load = best_count_vectors(values, candidates, num_packs,
                                                                  cap)
        best_peak = best_load.sum(axis=2).max(axis=1)
        better = best_peak < peak - TOLERANCE
        if not better.any():
            break
        counts[better], replica[better], load[better] = (
            best_counts[better], best_replica[better], best_load[better])
        peak[better] = best_peak[better]
    return counts, replica


def moved_counts(values: np.ndarray, counts: np.ndarray, heavy_experts: np.ndarray,
                 num_donors: int, num_receivers: int, cap: int | None = None) -> np.ndarray:
    """[X, donors x receivers, n] count vectors, each with one slot moved from a donor to a
    receiver (heavy_experts [X, S]: the experts on the heaviest GPU); a move that is not
    possible (donor = receiver, or a receiver already at `cap` replicas) repeats the
    current counts."""
    rows = np.arange(len(values))
    raised = np.where(counts >= 2, values / np.maximum(counts - 1, 1), np.inf)
    donors = np.argsort(raised, axis=1, kind="stable")[:, :num_donors]
    heavy_load = np.take_along_axis(values / counts, heavy_experts, axis=1)
    order = np.argsort(-heavy_load, axis=1, kind="stable")[:, :num_receivers]
    receivers = np.take_along_axis(heavy_experts, order, axis=1)
    candidates = []
    for donor in donors.T:
        for receiver in receivers.T:
            moved = counts.copy()
            possible = (donor != receiver) & (counts[rows, donor] >= 2)
            if cap is not None:
                possible &= counts[rows, receiver] < cap
            moved[rows[possible], donor[possible]] -= 1
            moved[rows[possible], receiver[possible]] += 1
            candidates.append(moved)
    return np.stack(candidates, axis=1)


def every_count_vector(num_log: int, num_phy: int, most: int) -> np.ndarray | None:
    """[V, n] every count vector (each >= 1, sum num_phy), or None if V > most."""
    extra = num_phy - num_log
    if math.comb(num_log + extra - 1, extra) > most:
        return None
    vectors = np.ones((math.comb(num_log + extra - 1, extra), num_log), dtype=np.int64)
    for index, chosen in enumerate(itertools.combinations_with_replacement(range(num_log),
                                                                           extra)):
        np.add.at(vectors[index], list(chosen), 1)
    return vectors


def best_count_vectors(values: np.ndarray, candidates: np.ndarray, num_packs: int,
                       cap: int | None = None):
    """(counts [R, n], replica and load [R, G, S]): each row's best of its candidate count
    vectors (`candidates` [R, V, n]), each packed by steps 2-3 (`packed`, cap as there);
    the first of equal maxima wins."""
    num_rows, num_vectors, num_log = candidates.shape
    counts = candidates.reshape(-1, num_log)
    replica, load = packed(np.repeat(values, num_vectors, axis=0), counts, num_packs, cap)
    peak = load.sum(axis=2).max(axis=1).reshape(num_rows, num_vectors)
    chosen = np.arange(num_rows) * num_vectors + peak.argmin(axis=1)
    return counts[chosen], replica[chosen], load[chosen]


def packed(values: np.ndarray, counts: np.ndarray, num_packs: int, cap: int | None = None,
           swaps: bool = True):
    """(replica, load) [R, G, S]: steps 2 and 3 (without swaps: 2 only) for the replicas
    of counts [R, n]; cap (not None: every count at most it, experts kept distinct per
    GPU) separates the copies packing by rounds puts together, and swaps keep them apart."""
    replica, load = packed_by_rounds(values, counts, num_packs)
    owner = None if cap is None else replica_experts(counts)
    if owner is not None:
        separate_copies(replica, load, owner)
    if swaps:
        search_swaps(replica, load, load.sum(axis=2), np.arange(len(values)), owner=owner)
    return replica, load


def placement_maps(replica: np.ndarray, counts: np.ndarray):
    """The `Placement` tuple with the replicas in slot order: replica [R, G, S] (indices in
    expert order), counts [R, n]."""
    num_rows, num_packs, slots = replica.shape
    in_slot_order = replica.reshape(num_rows, -1)
    replica2local = np.take_along_axis(replica_experts(counts), in_slot_order, axis=1)
    first_replica = np.cumsum(counts, axis=1) - counts
    rank = in_slot_order - np.take_along_axis(first_replica, replica2local, axis=1)
    slot = np.broadcast_to(np.arange(num_packs * slots), replica2local.shape)
    return (torch.from_numpy(replica2local), torch.from_numpy(rank), torch.from_numpy(counts),
            torch.from_numpy(slot // slots), torch.from_numpy(slot % slots))
