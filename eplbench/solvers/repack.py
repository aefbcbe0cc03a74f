"""Large-neighbourhood moves: a few GPUs of a placement re-packed exactly.

The most loaded GPU and 2 to 5 others (of its node, when the hierarchy must be kept;
REPACK_SIZES, MAX_REPACK_SLOTS) are emptied and packed again by the completion search
(`completion_kernel`):

- an expert whose every replica lies on these GPUs may take a new count (its slots stay
  among them, so every other GPU is untouched);
- an expert with replicas elsewhere too keeps its count, so its replicas here form one
  fixed item of r replicas of w / c each.

The search asks for the lowest cap it can settle within a short deadline, starting below
the current maximum; a move is kept only when every re-packed GPU ends below that maximum,
so the sorted load vector falls with every move and the loop ends. Loads are exact
integers: tokens x the lcm of every count that can occur among these GPUs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from eplbench.exact import scaled_slot_loads
from eplbench.problem import Topology
from eplbench.solvers import completion_kernel as kernel
from eplbench.solvers.completion import count_scale
from eplbench.solvers.work import Deadline, charge_placement_scoring, charge_tables

# GPUs re-packed in one move: the first size while it finds moves, then the next, up to
# MAX_REPACK_SLOTS slots in all (on DeepSeek-V3 nodes, S = 9, local search alone for 5 s:
# 1 of 11 nodes above 1e-4 with 3 and 4 GPUs, 3 of 11 with 3 to 5 or 3 to 6, where
# searches of 5 or 6 GPUs ran out of time; on medium-cut, S = 5 and 8, no clear difference)
REPACK_SIZES = (3, 4, 5, 6)
MAX_REPACK_SLOTS = 40
# seconds the completion search gets per cap tried, and per move in all (on medium-cut,
# packings found took a median 0.01 s or less; on DeepSeek-V3 nodes (S = 9) searches of
# four or more GPUs ran out of any time given; 0.01 s did at least as well as 0.1 s on both)
CAP_SECONDS = 0.01
MOVE_SECONDS = 0.3
# sets of partner GPUs tried for one maximum before giving up on it
PARTNER_TRIES = 12


def repack(weight: np.ndarray, phy2log: np.ndarray, topology: Topology, within_nodes: bool,
           deadline: Deadline, enough: Fraction | None = None,
           distinct: bool = False) -> np.ndarray:
    """[P] a placement no worse than `phy2log` ([P]); weight: [E] int64 tokens; distinct:
    no re-packed GPU gets two replicas of one expert.

    Moves until none of PARTNER_TRIES partner sets lowers the most loaded GPU, the load
    is at most `enough` (tokens), or `deadline` passes."""
    best = np.asarray(phy2log, dtype=np.int64).copy()
    random = np.random.default_rng(0)
    sizes = [k for k in REPACK_SIZES if k * topology.slots_per_gpu <= MAX_REPACK_SLOTS]
    sizes = sizes or [REPACK_SIZES[0]]
    size = 0
    while not deadline.passed() and size < len(sizes):
        charge_placement_scoring(deadline.meter, len(best))
        loads = _gpu_loads(weight, best, topology)
        top = int(np.argmax(loads))
        if enough is not None and loads[top] <= enough:
            break
        moved = None
        for partners in _partner_sets(loads, top, topology, within_nodes,
                                      sizes[size] - 1, random):
            moved = _repack_gpus(weight, best, topology, [top, *partners], loads[top],
                                 deadline.within(MOVE_SECONDS), distinct)
            if moved is not None or deadline.passed():
                break
        if moved is None:
            size += 1
        else:
            best, size = moved, 0
    return best


def _gpu_loads(weight, phy2log, topology: Topology) -> list[Fraction]:
    """[G] exact loads (tokens) of the GPUs, by the checker's lcm scaling (`exact`)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    slot_load, scale = scaled_slot_loads(weight[None, :], phy2log[None, :], counts[None, :])
    per_gpu = slot_load[0].reshape(topology.num_gpus, topology.slots_per_gpu).sum(axis=1)
    return [Fraction(int(load), scale[0]) for load in per_gpu]


def _partner_sets(loads, top: int, topology: Topology, within_nodes: bool, size: int,
                  random):
    """Lists of `size` GPUs to re-pack with `top`: the least loaded first, then random
    ones (from top's node under within_nodes)."""
    if within_nodes:
        first = top // topology.gpus_per_node * topology.gpus_per_node
        others = [g for g in range(first, first + topology.gpus_per_node) if g != top]
    else:
        others = [g for g in range(topology.num_gpus) if g != top]
    size = min(size, len(others))
    if size == 0:
        return
    yield sorted(others, key=lambda g: loads[g])[:size]
    tries = min(PARTNER_TRIES, math.comb(len(others), size)) - 1
    for _ in range(tries):
        yield [int(g) for g in random.choice(others, size, replace=False)]


def _repack_gpus(weight, phy2log, topology: Topology, gpus: list[int], ceiling: Fraction,
                 deadline: Deadline, distinct: bool = False):
    """[P] phy2log with `gpus` re-packed so that each is below `ceiling` (tokens), as low
    as the search settles by `deadline`; None if it finds no such packing."""
    slots = topology.slots_per_gpu
    items = _items(weight, phy2log, gpus, slots)
    if items is None:
        return None
    experts, load, min_count, max_count, scale = items
    tables = kernel.prepare(load, len(gpus), slots, min_count, max_count, distinct)
    charge_tables(deadline.meter, kernel.table_entries(tables))
    failed = kernel.new_failed_map()
    high = math.ceil(ceiling * scale) - 1
    low = -(-int(load.sum()) // len(gpus))
    placed = None
    while low <= high and not deadline.passed():
        cap = high if placed is None else (low + high) // 2
        status, found, _ = kernel.search(tables, cap, failed, deadline.within(CAP_SECONDS))
        if status == kernel.FOUND:
            placed = found.copy()
            replica = load // np.maximum(placed.sum(axis=1), 1)
            high = int((replica @ placed).max()) - 1
        elif placed is None:
            return None
        else:
            low = cap + 1
    if placed is None:
        return None
    moved = phy2log.copy()
    for j, gpu in enumerate(gpus):
        moved[gpu * slots:(gpu + 1) * slots] = np.repeat(experts, placed[:, j])
    return moved


def _items(weight, phy2log, gpus: list[int], slots: int):
    """The sub-problem on `gpus`, items heaviest first: (experts [n], scaled load [n],
    min_count [n], max_count [n], scale), or None where int64 would overflow.

    An expert with all its replicas here is free (counts 1 ..); one with replicas
    elsewhere is fixed at the r replicas it has here, of load w / c each."""
    counts = np.bincount(phy2log, minlength=len(weight))
    here = np.concatenate([phy2log[g * slots:(g + 1) * slots] for g in gpus])
    experts, r = np.unique(here, return_counts=True)
    fixed = r < counts[experts]
    scale = math.lcm(count_scale(len(experts), len(here)),
                     *(int(c) for c in counts[experts[fixed]]))
    total = sum(int(weight[e]) for e in experts) * scale  # Python ints: int64 sums wrap
    if (not kernel.fits_int64(total, len(gpus)) or len(gpus) > kernel.KEY_GPUS
            or slots > kernel.MAX_SLOTS_PER_GPU):
        return None
    load = np.array([int(weight[e]) * scale * int(k) // int(counts[e])
                     for e, k in zip(experts, r)], dtype=np.int64)
    min_count = np.where(fixed, r, 1).astype(np.int64)
    max_count = np.where(fixed, r, len(here)).astype(np.int64)  # prepare caps it at the widest
    order = np.argsort(-load, kind="stable")
    return experts[order], load[order], min_count[order], max_count[order], scale
