"""Our heuristic: replica counts chosen with the packing in view, greedy packing, then a
best-improvement swap search.

Counts: where the rows are few and small enough (at most `EXHAUSTIVE_WORK` replicas packed
in all), every count vector is packed and each row keeps its best. Otherwise D'Hondt first
(it minimises the largest replica, not the largest GPU), then, for up to `COUNT_ROUNDS` rounds, each row packs its counts and tries moving one replica slot from a
donor (among the `DONORS` experts with two or more replicas whose load per replica would
rise least) to a receiver (an expert on the heaviest GPU, heaviest replica first); every
candidate is packed in full, all rows and candidates at once, and a row keeps the best count
vector, its current one on ties. The candidates per row are capped so that a round packs at
most `WORK_PER_ROUND` replicas in all: small problems get the full search, a call with
many rows (the DeepSeek-V3 shape: 58 layers x 4 nodes) a narrower one or none.

Packing: after every greedy packing (groups to nodes, replicas to GPUs), each row repeats up to
`MAX_STEPS` times: of all swaps between an item of the heaviest pack h and an item of any
other pack g, take the one that leaves the pair's larger load smallest,
max(load_h - x, load_g + x) with x = w_i - w_j, and apply it when that is below load_h.
Unlike the seeds' fix-ups (heaviest against lightest only, two steps), every pack is a
partner and the search runs until no swap helps, so the result is swap-optimal for the
heaviest pack. Rows that have converged drop out of the arrays, so the later steps cost
little.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import torch

from eplbench.heuristics.deepseek import rebalance_with
from eplbench.heuristics.deepseek_fast import (balanced_packing_vectorised,
                                               replicate_experts_vectorised)
from eplbench.heuristics.replication_fixups import maps_from_counts
from eplbench.heuristics.swap_refinement import item_weights, members_of, pack_then

MAX_STEPS = 64
PARTNERS = 4
COUNT_ROUNDS = 10
DONORS = 4
WORK_PER_ROUND = 40_000
# replicas packed in all when every count vector is tried
EXHAUSTIVE_WORK = 300_000


def search_swaps(weight: np.ndarray, members: np.ndarray, max_steps: int) -> None:
    """In place on members [X, packs, k]; weight: [X, n]."""
    rows = np.arange(weight.shape[0])
    for _ in range(max_steps):
        if not len(rows):
            return
        item_weight = item_weights(weight[rows], members[rows])
        loads = item_weight.sum(axis=2)  # [R, packs]
        index = np.arange(len(rows))
        heavy = loads.argmax(axis=1)
        heavy_items = item_weight[index, heavy]  # [R, k]
        partners = np.argsort(loads, axis=1, kind="stable")[:, :PARTNERS]  # lightest first
        partner_items = item_weight[index[:, None], partners]  # [R, partners, k]
        gain = heavy_items[:, None, :, None] - partner_items[:, :, None, :]
        pair_max = np.maximum(loads[index, heavy][:, None, None, None] - gain,
                              np.take_along_axis(loads, partners, axis=1)[:, :, None, None]
                              + gain)
        pair_max[partners == heavy[:, None]] = np.inf  # no swap inside h
        per_pack = members.shape[2]
        flat = pair_max.reshape(len(rows), -1).argmin(axis=1)
        best = pair_max.reshape(len(rows), -1)[index, flat]
        better = best < loads[index, heavy] - 1e-9
        rows, flat, heavy, partners = rows[better], flat[better], heavy[better], partners[better]
        partner_rank, place = np.divmod(flat, per_pack * per_pack)
        partner = partners[np.arange(len(rows)), partner_rank]
        heavy_place, partner_place = np.divmod(place, per_pack)
        moved = members[rows, heavy, heavy_place].copy()
        members[rows, heavy, heavy_place] = members[rows, partner, partner_place]
        members[rows, partner, partner_place] = moved


# DeepSeek's packing contract: weight [X, n] -> (pack_index, rank_in_pack), [X, n]
swap_searched_packing = partial(pack_then, partial(search_swaps, max_steps=MAX_STEPS),
                                balanced_packing_vectorised)


def rebalance_experts(weight, num_replicas: int, num_groups: int, num_nodes: int,
                      num_gpus: int):
    """Engine signature; see `deepseek.rebalance_experts`."""
    per_node = num_groups % num_nodes == 0
    gpus_per_row = num_gpus // num_nodes if per_node else num_gpus
    return rebalance_with(swap_searched_packing, partial(counts_for_packing, gpus_per_row),
                          weight, num_replicas, num_groups, num_nodes, num_gpus)


def counts_for_packing(num_packs: int, weight: torch.Tensor, num_phy: int):
    """Replication stage (DeepSeek's contract) for rows packed onto `num_packs` GPUs."""
    values = weight.double().numpy()
    _, _, counts = replicate_experts_vectorised(weight, num_phy)
    counts = counts.numpy()
    num_rows, num_log = values.shape
    slots = num_phy // num_packs
    if num_phy == num_log or slots < 2:
        return maps_from_counts(counts)
    peak, heavy_experts = packed(values, counts, num_packs)
    every = every_count_vector(num_log, num_phy, EXHAUSTIVE_WORK // (num_rows * num_phy))
    if every is not None:
        candidates = np.tile(every, (num_rows, 1, 1))
        return maps_from_counts(best_of(values, counts, peak, heavy_experts, candidates,
                                        num_packs)[0])
    affordable = WORK_PER_ROUND // (num_rows * num_phy)
    receivers = min(slots, affordable // DONORS) if affordable >= DONORS else affordable
    donors = min(DONORS, affordable // max(receivers, 1))
    for _ in range(COUNT_ROUNDS if donors * receivers >= 2 else 0):
        candidates = moved_counts(values, counts, heavy_experts, donors, receivers)
        counts, peak, heavy_experts, improved = best_of(values, counts, peak, heavy_experts,
                                                        candidates, num_packs)
        if not improved:
            break
    return maps_from_counts(counts)


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


def best_of(values, counts, peak, heavy_experts, candidates, num_packs: int):
    """(counts, peak, heavy experts, any improved): each row's best of its current counts
    ([X, n], packed to `peak` [X]) and its `candidates` ([X, K, n]), the current on ties."""
    num_rows, num_candidates, num_log = candidates.shape
    flat = candidates.reshape(-1, num_log)
    candidate_peak, candidate_heavy = packed(np.repeat(values, num_candidates, axis=0), flat,
                                             num_packs)
    candidate_peak = candidate_peak.reshape(num_rows, num_candidates)
    rows = np.arange(num_rows)
    best = candidate_peak.argmin(axis=1)
    better = candidate_peak[rows, best] < peak - 1e-9
    chosen = rows * num_candidates + best
    return (np.where(better[:, None], flat[chosen], counts),
            np.where(better, candidate_peak[rows, best], peak),
            np.where(better[:, None], candidate_heavy[chosen], heavy_experts), better.any())


def packed(values: np.ndarray, counts: np.ndarray, num_packs: int):
    """(max pack load [R], experts on the heaviest pack [R, k]) when the replicas of
    `counts` ([R, n]) are packed by `swap_searched_packing`; values: [R, n]."""
    phy2log, _, _ = maps_from_counts(counts)
    phy2log = phy2log.numpy()
    replica_load = np.take_along_axis(values / counts, phy2log, axis=1)
    pack_index, rank = swap_searched_packing(torch.from_numpy(replica_load).float(), num_packs)
    members = members_of(pack_index.numpy(), rank.numpy(), num_packs)
    loads = item_weights(replica_load, members).sum(axis=2)
    heavy = loads.argmax(axis=1)
    heavy_replicas = members[np.arange(len(values)), heavy]
    return loads.max(axis=1), np.take_along_axis(phy2log, heavy_replicas, axis=1)


def moved_counts(values: np.ndarray, counts: np.ndarray, heavy_experts: np.ndarray,
                 num_donors: int, num_receivers: int):
    """[X, donors x receivers] count vectors [n], each one slot moved from a donor to a
    receiver; a move that is not possible (donor = receiver) repeats the current counts."""
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
            moved[rows[possible], donor[possible]] -= 1
            moved[rows[possible], receiver[possible]] += 1
            candidates.append(moved)
    return np.stack(candidates, axis=1)
