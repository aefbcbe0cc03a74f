"""Local search on one layer's placement: pair re-splits (counts kept) and count moves.

Pair re-splits, in exact integer units: repeatedly take the most loaded GPU, pool its S replicas with those of another GPU (of the
same node, if asked, so that the hierarchy is kept) and split the 2S replicas again, S
each, as evenly as possible; the partner whose best split gives the lowest larger half wins.
A move is made only when that half is below the old maximum, so the sorted load vector
falls with every move and the search ends. A single swap is one such re-split, so this
finds at least what swap search finds. Where C(2S-1, S-1) splits per pair are too many,
only single swaps are tried.

Count moves (`improve_placement`): one replica changes expert, from an expert with the
lightest replicas among those with two or more to one with the heaviest (in that order of
trial), the slot staying where it is, then re-splits; the first move whose result the
checker scores below the best so far is kept, until none is or time runs out.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np
from numba import njit

from eplbench.exact import scaled_slot_loads
from eplbench.problem import Topology
from eplbench.solvers.incumbent import layer_max_load

# the most splits of one pair of GPUs tried in full (C(2S-1, S-1): 24,310 for S = 9)
MAX_SPLITS = 50_000


def improve_placement(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                      within_nodes: bool, time_limit: float = 1.0) -> np.ndarray:
    """[P] a placement no worse than `phy2log` ([P]) after re-splits and count moves;
    weight: [E] int64 tokens; within_nodes keeps every replica on its node's experts (a
    hierarchical placement stays hierarchical); time_limit: seconds in all."""
    deadline = time.perf_counter() + time_limit
    best = improve_by_resplits(weight, phy2log, topology, within_nodes, time_limit)
    best_load = layer_max_load(weight, best, topology)
    while time.perf_counter() < deadline:
        for candidate in _count_moves(weight, best, topology, within_nodes):
            candidate = improve_by_resplits(weight, candidate, topology, within_nodes,
                                            max(0.0, deadline - time.perf_counter()))
            load = layer_max_load(weight, candidate, topology)
            if load < best_load:
                best, best_load = candidate, load
                break
            if time.perf_counter() >= deadline:
                return best
        else:
            return best
    return best


def _count_moves(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                 within_nodes: bool):
    """Placements ([P]) with one slot of a donor expert given to a taker expert: donors with
    two or more replicas, lightest replica first; takers heaviest replica first (under
    within_nodes, only experts already on the slot's node)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    replica = weight / np.maximum(counts, 1)
    takers = np.argsort(-replica, kind="stable")
    node_of_slot = np.arange(len(phy2log)) // topology.slots_per_node
    for donor in np.argsort(replica, kind="stable"):
        if counts[donor] < 2:
            continue
        slot = int(np.flatnonzero(phy2log == donor)[0])
        on_node = set(phy2log[node_of_slot == node_of_slot[slot]].tolist())
        for taker in takers:
            if taker != donor and (not within_nodes or int(taker) in on_node):
                moved = phy2log.copy()
                moved[slot] = taker
                yield moved


def improve_by_resplits(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                        within_nodes: bool, time_limit: float = 1.0) -> np.ndarray:
    """[P] a placement no worse than `phy2log` ([P]); weight: [E] int64 tokens.

    within_nodes: pair GPUs only inside a node (keeps a hierarchical placement hierarchical).
    time_limit: seconds; the search stops at a local optimum or then."""
    counts = np.bincount(phy2log, minlength=len(weight))
    slot_load, _ = scaled_slot_loads(weight[None, :], phy2log[None, :], counts[None, :])
    if slot_load.dtype == object:
        return phy2log  # loads too large for int64 arithmetic: leave it as it is
    gpus, slots = topology.num_gpus, topology.slots_per_gpu
    experts = phy2log.reshape(gpus, slots).copy()
    item = slot_load[0].reshape(gpus, slots).copy()
    per_node = topology.gpus_per_node if within_nodes else gpus
    full = math.comb(2 * slots - 1, slots - 1) <= MAX_SPLITS
    _resplit_loop(item, experts, per_node, full, time.perf_counter() + time_limit)
    return experts.reshape(-1)


@njit(cache=True)
def _resplit_loop(item, experts, per_node, full, deadline):
    """Re-split pairs in place: (most loaded GPU, best partner) while that lowers the
    maximum; when it no longer does, every pair of GPUs whose larger load a re-split
    lowers (this evens out the GPUs below the maximum and opens new moves for it).

    item, experts: [G, S] int64 slot loads and expert ids, rewritten together."""
    gpus, slots = item.shape
    load = item.sum(axis=1)
    pool = np.empty(2 * slots, dtype=np.int64)
    mask = np.empty(2 * slots, dtype=np.bool_)
    best_mask = np.empty(2 * slots, dtype=np.bool_)
    while _clock() < deadline:
        top = np.argmax(load)
        best_high, partner = load[top], -1
        first = top // per_node * per_node
        for other in range(first, first + per_node):
            if other != top:
                high = _best_split(item, top, other, pool, full, mask)
                if high < best_high:
                    best_high, partner = high, other
                    best_mask[:] = mask
        if partner >= 0:
            _apply_split(item, experts, load, top, partner, best_mask)
        elif not _even_out_pairs(item, experts, load, per_node, full, pool, mask, deadline):
            return


@njit(cache=True)
def _even_out_pairs(item, experts, load, per_node, full, pool, mask, deadline):
    """Re-split every pair of GPUs (same block of per_node) whose larger load that lowers;
    True if any did."""
    gpus = item.shape[0]
    changed = False
    for a in range(gpus):
        for b in range(a + 1, (a // per_node + 1) * per_node):
            if _best_split(item, a, b, pool, full, mask) < max(load[a], load[b]):
                _apply_split(item, experts, load, a, b, mask)
                changed = True
        if _clock() >= deadline:
            break
    return changed


@njit(cache=True)
def _clock() -> float:
    with numba.objmode(now="float64"):
        now = time.perf_counter()
    return now


@njit(cache=True)
def _best_split(item, a, b, pool, full, mask):
    """The lowest larger half over splits of GPUs a and b's pooled 2S slots into S + S;
    mask gets the first half's members (mask[0] is always in it: halves are unordered)."""
    slots = item.shape[1]
    pool[:slots], pool[slots:] = item[a], item[b]
    total = pool.sum()
    size = pool.shape[0]
    best = total + 1
    if not full:  # single swaps only: item 0..S-1 against S..2S-1
        first = pool[:slots].sum()
        for i in range(slots):
            for j in range(slots, size):
                half = first - pool[i] + pool[j]
                high = max(half, total - half)
                if high < best:
                    best = high
                    mask[:] = False
                    mask[:slots] = True
                    mask[i], mask[j] = False, True
        return best
    # combinations of S - 1 of items 1..2S-1, each with item 0, in lexicographic order
    chosen = np.arange(1, slots)
    while True:
        half = pool[0]
        for k in range(slots - 1):
            half += pool[chosen[k]]
        high = max(half, total - half)
        if high < best:
            best = high
            mask[:] = False
            mask[0] = True
            for k in range(slots - 1):
                mask[chosen[k]] = True
        k = slots - 2
        while k >= 0 and chosen[k] == size - (slots - 1) + k:
            k -= 1
        if k < 0:
            return best
        chosen[k] += 1
        for j in range(k + 1, slots - 1):
            chosen[j] = chosen[j - 1] + 1


@njit(cache=True)
def _apply_split(item, experts, load, top, partner, mask):
    """Rewrite GPUs top and partner as the split `mask` (over their pooled slots) says."""
    slots = item.shape[1]
    pool_item = np.concatenate((item[top], item[partner]))
    pool_expert = np.concatenate((experts[top], experts[partner]))
    a = b = 0
    for k in range(2 * slots):
        if mask[k]:
            item[top, a], experts[top, a] = pool_item[k], pool_expert[k]
            a += 1
        else:
            item[partner, b], experts[partner, b] = pool_item[k], pool_expert[k]
            b += 1
    load[top], load[partner] = item[top].sum(), item[partner].sum()


def warm_up() -> None:
    """Compile (or load from numba's cache) the search with a trivial call, so that the
    one-off cost per process is not counted in the first layer's solve time."""
    improve_by_resplits(np.array([2, 1], dtype=np.int64), np.array([0, 1], dtype=np.int64),
                        Topology(2, 1, 1, 2), False)
