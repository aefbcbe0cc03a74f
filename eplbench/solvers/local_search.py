"""Local search on one layer's placement: pair re-splits (counts kept) and count moves.

Pair re-splits, in exact integer units: repeatedly take the most loaded GPU, pool its S
replicas with those of another GPU (of the same node, if asked, so that the hierarchy is
kept) and split the 2S replicas again, S each, as evenly as possible; the partner whose
best split gives the lowest larger half wins. A move is made only when that half is below
the old maximum, so the sorted load vector falls with every move and the search ends. A
single swap is one such re-split, so this finds at least what swap search finds. The best
split of a pair is found by meeting in the middle (each GPU's subsets, the second's sorted
by size and sum); beyond MAX_SPLIT_SLOTS slots, only single swaps are tried.

Count moves (`improve_placement`): one replica changes expert, from an expert with the
lightest replicas among those with two or more to one with the heaviest (in that order of
trial, MOVE_CHOICES of each), the slot staying where it is, then re-splits; the first
move whose result the checker scores below the best so far is kept, until none is or time
runs out. With kicks, every descent first re-packs a few GPUs exactly (`repack`), and
random count moves restart it (iterated local search).

With `distinct` (no GPU holds two replicas of one expert, kept by every move): a pair's
two copies of one expert stay one on each GPU and the other items are split as above
(`_distinct_split`), a count move gives a slot only to an expert not on its GPU, and
re-packs put at most one replica of an expert on a GPU.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from eplbench.exact import scaled_slot_loads
from eplbench.problem import Topology
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.numba_clock import spend
from eplbench.solvers.repack import repack
from eplbench.solvers.work import Deadline, charge_placement_scoring

# the most slots per GPU for which a pair re-split finds the best of all C(2S-1, S-1)
# splits (meet in the middle: 2^S subset sums a side, 19 us a pair for S = 9 against
# 500 us trying every split in turn); beyond, single swaps only
MAX_SPLIT_SLOTS = 14
# donors, and takers per donor, that one round of count moves tries
MOVE_CHOICES = 8
# work charged per pair split tried (`split_ticks`): measured against the completion
# search's nodes (see `work`)
SPLIT_BASE_TICKS = 10
SPLIT_SUBSET_TICKS = 1


def improve_placement(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                      within_nodes: bool, deadline: Deadline, kicks: bool = False,
                      enough=None, seed: int = 0, descended: bool = False,
                      distinct: bool = False) -> np.ndarray:
    """[P] a placement no worse than `phy2log` ([P]) after re-splits and count moves;
    weight: [E] int64 tokens; within_nodes keeps every replica on its node's experts (a
    hierarchical placement stays hierarchical); the search stops at `deadline` (work).

    kicks: re-packs in every descent (`repack`), and at a local optimum, go on until the
    time limit from random count moves of the best placement (iterated local search,
    seeded by `seed`: the same calls give the same kicks), or until the load is at most
    `enough` (tokens, e.g. a lower bound). descended: phy2log is already the end of a
    descent (say, of an earlier call), so the kicks start at once. distinct: phy2log keeps
    every GPU's experts distinct, and so does every move."""
    best = phy2log if descended else _descend(weight, phy2log, topology, within_nodes,
                                              deadline, enough, kicks, distinct)
    best_load = _score(weight, best, topology, deadline)
    random = np.random.default_rng(seed)
    while kicks and not deadline.passed() and _above(best_load, enough):
        kicked = _random_count_move(best, topology, within_nodes, random, distinct)
        kicked = _descend(weight, kicked, topology, within_nodes, deadline, enough, kicks,
                          distinct)
        load = _score(weight, kicked, topology, deadline)
        if load < best_load:
            best, best_load = kicked, load
    return best


def _descend(weight, phy2log, topology, within_nodes, deadline, enough,
             repacks, distinct) -> np.ndarray:
    """Re-splits; with `repacks`, re-packs of a few GPUs (`repack`); then the first
    improving count move (re-split) while there is one; all of it again while count moves
    lower the load, the load is above `enough` (None: no such stop) and time is left."""
    best = improve_by_resplits(weight, phy2log, topology, within_nodes, deadline, distinct)
    best_load = _score(weight, best, topology, deadline)
    improved = _above(best_load, enough)
    while improved and not deadline.passed():
        if repacks:
            best = repack(weight, best, topology, within_nodes, deadline, enough, distinct)
            best_load = _score(weight, best, topology, deadline)
        moved, load = _count_move_descent(weight, best, best_load, topology, within_nodes,
                                          deadline, enough, distinct)
        improved = repacks and load < best_load and _above(load, enough)
        best, best_load = moved, load
    return best


def _count_move_descent(weight, best, best_load, topology, within_nodes, deadline, enough,
                        distinct):
    """(placement, load) after the first improving count move (re-split), while there is
    one, the load is above `enough` and time is left."""
    improved = _above(best_load, enough)
    while improved and not deadline.passed():
        improved = False
        for candidate in _count_moves(weight, best, topology, within_nodes, distinct):
            candidate = improve_by_resplits(weight, candidate, topology, within_nodes,
                                            deadline, distinct)
            load = _score(weight, candidate, topology, deadline)
            if load < best_load:
                best, best_load = candidate, load
                improved = _above(best_load, enough)
                break
            if deadline.passed():
                break
    return best, best_load


def _score(weight, phy2log, topology: Topology, deadline: Deadline):
    """The checker's max load of phy2log (tokens), charged to the deadline's meter."""
    charge_placement_scoring(deadline.meter, len(phy2log))
    return layer_max_load(weight, phy2log, topology)


def _above(load, enough) -> bool:
    """Whether the search should go on: load above `enough` (None: always)."""
    return enough is None or load > enough


def _count_moves(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                 within_nodes: bool, distinct: bool = False):
    """Placements ([P]) with one slot of a donor expert given to a taker expert: the
    MOVE_CHOICES donors with two or more replicas, lightest replica first, each with the
    MOVE_CHOICES takers with the heaviest replicas (under within_nodes, only experts already
    on the slot's node; distinct: none already on the slot's GPU)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    replica = weight / np.maximum(counts, 1)
    takers = np.argsort(-replica, kind="stable")
    donors = [d for d in np.argsort(replica, kind="stable") if counts[d] >= 2]
    for donor in donors[:MOVE_CHOICES]:
        slot = int(np.flatnonzero(phy2log == donor)[0])
        allowed = _takers_for(phy2log, slot, topology, within_nodes)
        barred = _on_gpu_of(phy2log, slot, topology) if distinct else {donor}
        chosen = [t for t in takers
                  if int(t) not in barred and (allowed is None or int(t) in allowed)]
        for taker in chosen[:MOVE_CHOICES]:
            moved = phy2log.copy()
            moved[slot] = taker
            yield moved


def _random_count_move(phy2log: np.ndarray, topology: Topology, within_nodes: bool,
                       random: np.random.Generator, distinct: bool = False) -> np.ndarray:
    """[P] phy2log with one random slot of an expert with two or more replicas given to a
    random other expert (under within_nodes, one already on the slot's node; distinct:
    none already on the slot's GPU)."""
    counts = np.bincount(phy2log)
    slots = np.flatnonzero(counts[phy2log] >= 2)
    if len(slots) == 0:
        return phy2log
    slot = int(random.choice(slots))
    allowed = _takers_for(phy2log, slot, topology, within_nodes)
    pool = sorted(allowed) if allowed is not None else range(len(counts))
    barred = _on_gpu_of(phy2log, slot, topology) if distinct else {int(phy2log[slot])}
    takers = [t for t in pool if t not in barred]
    if not takers:
        return phy2log
    moved = phy2log.copy()
    moved[slot] = random.choice(takers)
    return moved


def _takers_for(phy2log, slot: int, topology: Topology, within_nodes: bool):
    """The experts a slot may be given to: those already on its node (within_nodes), or
    None for any expert."""
    if not within_nodes:
        return None
    node = slot // topology.slots_per_node
    per_node = topology.slots_per_node
    return set(phy2log[node * per_node:(node + 1) * per_node].tolist())


def _on_gpu_of(phy2log: np.ndarray, slot: int, topology: Topology) -> set:
    """The experts on the GPU of `slot`."""
    first = slot // topology.slots_per_gpu * topology.slots_per_gpu
    return set(phy2log[first:first + topology.slots_per_gpu].tolist())


def improve_by_resplits(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                        within_nodes: bool, deadline: Deadline,
                        distinct: bool = False) -> np.ndarray:
    """[P] a placement no worse than `phy2log` ([P]); weight: [E] int64 tokens.

    within_nodes: pair GPUs only inside a node (keeps a hierarchical placement hierarchical).
    distinct: phy2log keeps every GPU's experts distinct, and so does every re-split.
    The search stops at a local optimum or at `deadline` (each pair split tried is
    charged SPLIT_TICKS by its size)."""
    charge_placement_scoring(deadline.meter, len(phy2log))
    counts = np.bincount(phy2log, minlength=len(weight))
    slot_load, _ = scaled_slot_loads(weight[None, :], phy2log[None, :], counts[None, :])
    if slot_load.dtype == object:
        return phy2log  # loads too large for int64 arithmetic: leave it as it is
    gpus, slots = topology.num_gpus, topology.slots_per_gpu
    experts = phy2log.reshape(gpus, slots).copy()
    item = slot_load[0].reshape(gpus, slots).copy()
    per_node = topology.gpus_per_node if within_nodes else gpus
    full = slots <= MAX_SPLIT_SLOTS
    meter = deadline.meter
    _resplit_loop(item, experts, per_node, full, distinct, split_ticks(slots, full),
                  meter.work, deadline.stop, meter.wall)
    return experts.reshape(-1)


def split_ticks(slots: int, full: bool) -> int:
    """Work charged for one pair split: meet in the middle over 2^S subset sums (full),
    or S x S single swaps."""
    return SPLIT_BASE_TICKS + (SPLIT_SUBSET_TICKS * (1 << slots) if full else slots * slots)


@njit(cache=True)
def _resplit_loop(item, experts, per_node, full, distinct, cost, work, stop, wall):
    """Re-split pairs in place: (most loaded GPU, best partner) while that lowers the
    maximum; when it no longer does, every pair of GPUs whose larger load a re-split
    lowers (this evens out the GPUs below the maximum and opens new moves for it).

    item, experts: [G, S] int64 slot loads and expert ids, rewritten together."""
    gpus, slots = item.shape
    load = item.sum(axis=1)
    pool = np.empty(2 * slots, dtype=np.int64)
    mask = np.empty(2 * slots, dtype=np.bool_)
    best_mask = np.empty(2 * slots, dtype=np.bool_)
    while not spend(work, 0, stop, wall):
        top = np.argmax(load)
        best_high, partner = load[top], -1
        first = top // per_node * per_node
        for other in range(first, first + per_node):
            if other != top:
                spend(work, cost, stop, wall)
                high = _best_split(item, experts, top, other, pool, full, distinct, mask)
                if high < best_high:
                    best_high, partner = high, other
                    best_mask[:] = mask
        if partner >= 0:
            _apply_split(item, experts, load, top, partner, best_mask)
        elif not _even_out_pairs(item, experts, load, per_node, full, distinct, pool, mask,
                                 cost, work, stop, wall):
            return


@njit(cache=True)
def _even_out_pairs(item, experts, load, per_node, full, distinct, pool, mask, cost, work,
                    stop, wall):
    """Re-split every pair of GPUs (same block of per_node) whose larger load that lowers;
    True if any did."""
    gpus = item.shape[0]
    changed = False
    for a in range(gpus):
        for b in range(a + 1, (a // per_node + 1) * per_node):
            spend(work, cost, stop, wall)
            if _best_split(item, experts, a, b, pool, full, distinct, mask) < max(load[a],
                                                                                 load[b]):
                _apply_split(item, experts, load, a, b, mask)
                changed = True
        if spend(work, 0, stop, wall):
            break
    return changed


@njit(cache=True)
def _best_split(item, experts, a, b, pool, full, distinct, mask):
    """The lowest larger half over splits of GPUs a and b's pooled 2S slots into S + S
    (distinct: each half holding distinct experts, `_distinct_split`); mask gets the first
    half's members (mask[0] is always in it: halves are unordered)."""
    if distinct:
        return _distinct_split(item, experts, a, b, pool, full, mask)
    slots = item.shape[1]
    pool[:slots], pool[slots:] = item[a], item[b]
    return _split_pool(pool, slots, full, mask)


@njit(cache=True)
def _distinct_split(item, experts, a, b, pool, full, mask):
    """`_best_split` for GPUs a and b that each hold distinct experts, keeping them so: an
    expert on both keeps one copy on each (the copies are equal, so that adds its load to
    both halves), and the other items are split evenly (`_split_pool`)."""
    slots = item.shape[1]
    shared_a = np.zeros(slots, dtype=np.bool_)
    shared_b = np.zeros(slots, dtype=np.bool_)
    shared = 0
    for i in range(slots):
        for j in range(slots):
            if not shared_b[j] and experts[a, i] == experts[b, j]:
                shared_a[i] = shared_b[j] = True
                shared += item[a, i]
                break
    own = slots - int(shared_a.sum())
    pool[:own] = item[a][~shared_a]
    pool[own:2 * own] = item[b][~shared_b]
    halves = np.zeros(2 * own, dtype=np.bool_)
    best = shared + (_split_pool(pool[:2 * own], own, full, halves) if own else 0)
    mask[:slots] = shared_a
    mask[slots:] = False
    mask[:slots][~shared_a] = halves[:own]
    mask[slots:][~shared_b] = halves[own:]
    return best


@njit(cache=True)
def _split_pool(pool, slots, full, mask):
    """The lowest larger half over splits of pool ([2 slots] loads) into its first half
    and the rest, `slots` each; mask gets the first half's members (mask[0] is in it)."""
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
    # meet in the middle: item 0 with a subset of items 1..S-1 (2^(S-1) of them), then
    # the subset of items S..2S-1 of the right size whose sum brings the half nearest
    # total / 2 (binary search among that size's sorted sums)
    left_sum, left_size = _subset_sums(pool[1:slots])
    right_sum, right_size = _subset_sums(pool[slots:])
    order, first_of_size = _by_size_then_sum(right_sum, right_size, slots)
    sorted_sum = right_sum[order]
    best_left = best_right = 0
    for left in range(left_sum.shape[0]):
        base = pool[0] + left_sum[left]
        wanted = slots - 1 - left_size[left]  # right items the half still needs
        begin, end = first_of_size[wanted], first_of_size[wanted + 1]
        # the first right subset with 2 * (base + its sum) >= total, and the one before
        k = begin + np.searchsorted(sorted_sum[begin:end], -((2 * base - total) // 2))
        for at in (k - 1, k):
            if begin <= at < end:
                half = base + sorted_sum[at]
                high = max(half, total - half)
                if high < best:
                    best, best_left, best_right = high, left, order[at]
    for k in range(slots):
        mask[k] = k == 0 or (best_left >> (k - 1)) & 1 == 1
        mask[slots + k] = (best_right >> k) & 1 == 1
    return best


@njit(cache=True)
def _subset_sums(values):
    """([2^n] sum, [2^n] size) of every subset of values ([n]); bit k of a subset's index
    says whether values[k] is in it."""
    sums = np.zeros(1 << values.shape[0], dtype=np.int64)
    sizes = np.zeros_like(sums)
    for k in range(values.shape[0]):
        for subset in range(1 << k):
            sums[subset | 1 << k] = sums[subset] + values[k]
            sizes[subset | 1 << k] = sizes[subset] + 1
    return sums, sizes


@njit(cache=True)
def _by_size_then_sum(sums, sizes, most):
    """(order, first_of_size [most + 2]): subset indices sorted by size, then sum; those of
    size j are order[first_of_size[j]:first_of_size[j + 1]]."""
    first_of_size = np.zeros(most + 2, dtype=np.int64)
    for size in sizes:
        first_of_size[size + 1] += 1
    first_of_size = np.cumsum(first_of_size)
    order = np.argsort(sums, kind="mergesort")
    filled = first_of_size.copy()
    by_size = np.empty_like(order)
    for subset in order:
        by_size[filled[sizes[subset]]] = subset
        filled[sizes[subset]] += 1
    return by_size, first_of_size


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
                        Topology(2, 1, 1, 2), False, Deadline.budget(60))
