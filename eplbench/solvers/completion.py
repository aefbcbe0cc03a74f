"""Exact search for the global policy: replica counts and packing decided together.

`feasible_below(cap)` answers "is there a placement whose every GPU load is at most cap?" by
bin completion over experts, heaviest first: each expert in turn gets a replica count and a
spread of its replicas over the GPUs. Loads are integers, tokens x `scale` with
scale = lcm(1..P-E+1) (no expert can have more than P - E + 1 replicas), so every replica
load w * scale / c is exact. Pruning:

- a replica heavier than cap is never made (counts start at ceil(w / cap));
- the experts left must fit in the room the open GPUs have left under cap (the total load
  of an expert does not depend on its count);
- GPUs in the same state (load, replicas) are interchangeable: a spread gives each of them
  no more replicas than the one before;
- a state (experts placed, GPU states) proven infeasible at some cap is remembered and
  reused for every cap at or below it.

`solve_global` descends from the incumbent one unit at a time; every answer is exact: ub
is a real placement's load, and lb = ub only once a round proved nothing lies below it.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np

from eplbench.problem import Topology
from eplbench.solvers.bounds import count_free_bound
from eplbench.solvers.pairs import solve_pairs

# the most GPUs the search takes on: beyond, on medium-cut (8 GPUs), the joint model alone
# did better in the same time (median gap 7.3e-4 against 9.3e-4 at 60 s)
MAX_GPUS = 4
# search nodes (placements and spread steps) between two deadline checks
CHECK_EVERY = 2_000


class EnumerationTooLarge(Exception):
    """The problem is larger than the exact enumerations take on (the joint model does)."""


class SearchTimeout(Exception):
    """The deadline passed before the search finished."""


def count_scale(num_experts: int, num_slots: int) -> int:
    """lcm(1..P-E+1): every replica load is an integer multiple of 1 / scale tokens."""
    return math.lcm(*range(1, num_slots - num_experts + 2))


class Completion:
    """Bin completion for one global problem. weight: [E] tokens (int)."""

    def __init__(self, weight, topology: Topology, deadline: float):
        self.num_gpus = topology.num_gpus
        self.slots = topology.slots_per_gpu
        self.num_slots = topology.num_replicas
        self.scale = count_scale(len(weight), self.num_slots)
        self.order = [int(e) for e in np.argsort(-np.asarray(weight), kind="stable")]
        self.load = [int(weight[e]) * self.scale for e in self.order]
        # load of the experts from position d on
        self.rest = [sum(self.load[d:]) for d in range(len(self.load) + 1)]
        self.deadline = deadline
        self.failed: dict[tuple, int] = {}
        self.nodes = 0

    def feasible_below(self, cap: int):
        """[G][S] expert ids of a placement with every GPU load <= cap (scaled), or None
        when there is none. Raises SearchTimeout at the deadline."""
        self.cap = cap
        self.min_count = [max(1, -(-load // cap)) if cap > 0 else (1 if load == 0 else None)
                          for load in self.load]
        if None in self.min_count:
            return None
        self.min_rest = [sum(self.min_count[d:]) for d in range(len(self.load) + 1)]
        gpus = tuple((0, 0, ()) for _ in range(self.num_gpus))
        found = self._place(0, gpus, self.num_slots)
        return None if found is None else [list(members) for _, _, members in found]

    def _place(self, depth: int, gpus: tuple, free: int):
        """gpus: (load, replicas, members) per GPU, sorted by (load, replicas)."""
        if depth == len(self.load):
            return gpus
        self._count_node()
        key = (depth, tuple((load, used) for load, used, _ in gpus))
        if self.failed.get(key, -1) >= self.cap:
            return None
        needed = self._counts_needed(depth, gpus)
        if needed is None or sum(needed) > free or not self._fillable(depth, gpus):
            self.failed[key] = self.cap
            return None
        last = depth == len(self.load) - 1
        low = needed[0]
        high = free - sum(needed[1:])
        for count in range(free if last else low, high + 1):
            for spread in self._spreads(gpus, depth, count):
                found = self._place(depth + 1, spread, free - count)
                if found is not None:
                    return found
        self.failed[key] = self.cap
        return None

    def _count_node(self) -> None:
        """Count one search node (placements and spread steps); SearchTimeout at the deadline."""
        self.nodes += 1
        if self.nodes % CHECK_EVERY == 0 and time.perf_counter() >= self.deadline:
            raise SearchTimeout

    def _fillable(self, depth: int, gpus: tuple) -> bool:
        """Every open GPU can still be filled close enough to cap: the room all open GPUs
        leave beyond the load still to place is the most any one of them may leave empty,
        and its free slots take at most the largest experts left, one whole expert each."""
        open_gpus = [(self.cap - load, self.slots - used) for load, used, _ in gpus
                     if used < self.slots]
        spare = sum(room for room, _ in open_gpus) - self.rest[depth]
        if spare < 0:
            return False
        last = len(self.load)
        return all(self.rest[depth] - self.rest[min(last, depth + free)] >= room - spare
                   for room, free in open_gpus)

    def _counts_needed(self, depth: int, gpus: tuple):
        """[E - depth] the fewest replicas each expert left needs so that one replica fits
        in the roomiest open GPU (None when no GPU is open)."""
        room = max((self.cap - load for load, used, _ in gpus if used < self.slots),
                   default=None)
        if room is None or room < 0:
            return None
        if room == 0:
            return None if self.rest[depth] else [1] * (len(self.load) - depth)
        return [max(1, -(-load // room)) for load in self.load[depth:]]

    def _spreads(self, gpus: tuple, depth: int, count: int):
        """Every canonical way to put `count` replicas of the expert at `depth` on the GPUs
        that keeps each GPU under cap and leaves room for the experts after it."""
        replica = self.load[depth] // count
        expert = self.order[depth]
        cap, slots, rest = self.cap, self.slots, self.rest[depth + 1]

        takes = [min(slots - used, (cap - load) // replica if replica else slots)
                 for load, used, _ in gpus]
        rooms = [cap - load if used < slots else 0 for load, used, _ in gpus]
        takes_after = _suffix_sums(takes)
        room_after = _suffix_sums(rooms)

        def spread(index, left, previous, placed, room):
            self._count_node()
            # the GPUs from `index` on must take `left` replicas and keep enough room
            if left > takes_after[index] or room + room_after[index] - left * replica < rest:
                return
            if index == len(gpus):
                yield tuple(sorted(placed, key=lambda gpu: gpu[:2]))
                return
            load, used, members = gpus[index]
            most = min(left, takes[index])
            if index > 0 and gpus[index - 1][:2] == (load, used):
                most = min(most, previous)
            for number in _preferred(most):
                new_used = used + number
                new_load = load + number * replica
                gpu_room = cap - new_load if new_used < slots else 0
                yield from spread(index + 1, left - number, number,
                                  placed + [(new_load, new_used, members + (expert,) * number)],
                                  room + gpu_room)

        return spread(0, count, count, [], 0)


def _suffix_sums(values: list[int]) -> list[int]:
    """[len + 1] sum of values[i:] for every i."""
    sums = [0] * (len(values) + 1)
    for index in range(len(values) - 1, -1, -1):
        sums[index] = sums[index + 1] + values[index]
    return sums


def _preferred(most: int):
    """0..most, one replica first (spreading an expert is the usual good move)."""
    if most < 1:
        return range(most + 1)
    return [1, 0, *range(2, most + 1)]


def solve_global(weight, topology: Topology, incumbent: np.ndarray, deadline: float,
                 cutoff: Fraction | None = None):
    """(phy2log [P], ub, lb) for one global-policy problem, weight: [E] tokens.

    Descends from the incumbent's load (a valid [P] placement): each round asks for a
    placement one unit below the best so far (or below `cutoff`), until a round proves there
    is none (then lb = ub) or the deadline passes (then lb is the count-free bound). With
    `cutoff`, values at or above it need no proof: the search may stop with lb >= cutoff.
    Raises EnumerationTooLarge beyond MAX_GPUS GPUs (unless S <= 2 and the closed form
    applies).
    """
    if topology.slots_per_gpu <= 2:
        try:
            return _solve_in_closed_form(weight, topology, incumbent)
        except ValueError:
            pass  # too many count vectors: search
    if topology.num_gpus > MAX_GPUS:
        raise EnumerationTooLarge(f"{topology.num_gpus} GPUs for the completion search")
    lower, _ = count_free_bound(weight, topology.num_replicas, topology.num_gpus)
    search = Completion(weight, topology, deadline)
    best = np.asarray(incumbent, dtype=np.int64)
    high = _scaled_max_load(weight, best, topology, search.scale)
    low = math.ceil(lower * search.scale)
    enough = high if cutoff is None else min(high, math.ceil(cutoff * search.scale))
    try:
        while low < min(high, enough):
            below = min(high, enough) - 1
            found = search.feasible_below(below)
            if found is None:
                low = below + 1
            else:
                best = np.array([e for gpu in found for e in gpu], dtype=np.int64)
                high = _scaled_max_load(weight, best, topology, search.scale)
    except SearchTimeout:
        pass
    return best, Fraction(high, search.scale), Fraction(min(low, high), search.scale)


def _solve_in_closed_form(weight, topology: Topology, incumbent: np.ndarray):
    """(phy2log, ub, lb) with ub == lb, through `pairs.solve_pairs` (S <= 2)."""
    best = np.asarray(incumbent, dtype=np.int64)
    scale = count_scale(len(weight), topology.num_replicas)
    upper = Fraction(_scaled_max_load(weight, best, topology, scale), scale)
    found = solve_pairs(weight, topology, upper)
    if found is not None:
        best, upper = found
    return best, upper, upper


def _scaled_max_load(weight, phy2log, topology: Topology, scale: int) -> int:
    """The placement's max GPU load in tokens x scale (exact: counts divide scale)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    per_gpu = phy2log.reshape(topology.num_gpus, topology.slots_per_gpu)
    return max(sum(int(weight[e]) * scale // int(counts[e]) for e in gpu) for gpu in per_gpu)
