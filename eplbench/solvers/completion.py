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

The search itself is compiled (`completion_kernel`, numba; 0.2-0.5 us a node here,
each charged NODE_TICKS of the solve's work budget, `work`).

`solve_global` descends from the incumbent one unit at a time; every answer is exact: ub
is a real placement's load, and lb = ub only once a round proved nothing lies below it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from eplbench.problem import Topology
from eplbench.solvers import completion_kernel as kernel
from eplbench.solvers.bounds import count_free_bound, exact_sum
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.pairs import solve_pairs
from eplbench.solvers.work import Deadline, charge_tables

# the problems the search takes on: up to FEW_GPUS GPUs, and up to MAX_GPUS with at most
# WIDE_SLOTS slots per GPU. 5-8 GPUs of 3 slots (held-out layers, E = 4..16, P = 15..24):
# all 30 certified at 10 s of work, median 0.1 s; on medium-cut (8 GPUs of 5 and 8 slots)
# the joint model did better in the same work (2/20 certified, median gap 1.9e-5,
# against none and 4.2e-5 at 10 s); 8 GPUs of 4 slots: about even (`docs/solvers.md`)
FEW_GPUS = 4
MAX_GPUS = 8
WIDE_SLOTS = 3


class EnumerationTooLarge(Exception):
    """The problem is larger than the exact enumerations take on (the joint model does)."""


class SearchTimeout(Exception):
    """The deadline passed before the search finished."""


def count_scale(num_experts: int, num_slots: int) -> int:
    """lcm(1..P-E+1): every replica load is an integer multiple of 1 / scale tokens."""
    return math.lcm(*range(1, num_slots - num_experts + 2))


def too_large(topology: Topology) -> str:
    """Why the completion search does not take `topology`'s problems on ('' if it does)."""
    gpus, slots = topology.num_gpus, topology.slots_per_gpu
    if gpus > MAX_GPUS or (gpus > FEW_GPUS and slots > WIDE_SLOTS):
        return f"{gpus} GPUs of {slots} slots for the completion search"
    return ""


class Completion:
    """Bin completion for one global problem (the compiled search in `completion_kernel`).

    weight: [E] tokens (int); distinct: no GPU holds two replicas of one expert. States
    proven infeasible are kept between calls."""

    def __init__(self, weight, topology: Topology, deadline: Deadline, distinct: bool = False):
        self.num_gpus = topology.num_gpus
        self.scale = count_scale(len(weight), topology.num_replicas)
        if not kernel.fits_int64(exact_sum(weight) * self.scale, self.num_gpus):
            raise EnumerationTooLarge("layer total x lcm(1..P-E+1) past the compiled "
                                      "search's int64 arithmetic")
        if (self.num_gpus > kernel.KEY_GPUS or len(weight) >= 2**14
                or topology.slots_per_gpu > kernel.MAX_SLOTS_PER_GPU):
            raise EnumerationTooLarge("GPUs, experts or slots beyond the compiled search's "
                                      "state keys")
        self.order = np.argsort(-np.asarray(weight), kind="stable")
        load = np.asarray(weight, dtype=np.int64)[self.order] * self.scale
        self.tables = kernel.prepare(load, self.num_gpus, topology.slots_per_gpu,
                                     distinct=distinct)
        charge_tables(deadline.meter, kernel.table_entries(self.tables))
        self.deadline = deadline
        self.failed = kernel.new_failed_map()
        self.nodes = 0

    def feasible_below(self, cap: int):
        """[G][S] expert ids of a placement with every GPU load <= cap (scaled), or None
        when there is none. Raises SearchTimeout once the deadline (work) passes."""
        if cap < 0:
            return None
        status, placed, nodes = kernel.search(self.tables, cap, self.failed, self.deadline)
        self.nodes += nodes
        if status == kernel.TIMEOUT:
            raise SearchTimeout
        if status == kernel.NONE:
            return None
        return [[int(self.order[d]) for d in range(len(self.order))
                 for _ in range(placed[d, gpu])] for gpu in range(self.num_gpus)]


def solve_global(weight, topology: Topology, incumbent: np.ndarray, deadline: Deadline,
                 cutoff: Fraction | None = None, distinct: bool = False):
    """(phy2log [P], ub, lb) for one global-policy problem, weight: [E] tokens.

    Descends from the incumbent's load (a valid [P] placement): each round asks for a
    placement one unit below the best so far (or below `cutoff`), until a round proves there
    is none (then lb = ub) or the deadline passes (then lb is the count-free bound). With
    `cutoff`, values at or above it need no proof: the search may stop with lb >= cutoff.
    Raises EnumerationTooLarge where the search does not take the problem on (`too_large`;
    unless S <= 2 and the closed form applies). distinct: no GPU holds two replicas of one
    expert (the incumbent must keep it; the closed form, which may pair an expert with
    itself, is not used).
    """
    if topology.slots_per_gpu <= 2 and not distinct:
        try:
            return _solve_in_closed_form(weight, topology, incumbent)
        except ValueError:
            pass  # too many count vectors: search
    reason = too_large(topology)
    if reason:
        raise EnumerationTooLarge(reason)
    lower, _ = count_free_bound(weight, topology.num_replicas, topology.num_gpus)
    search = Completion(weight, topology, deadline, distinct)
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
    upper = layer_max_load(weight, best, topology)
    found = solve_pairs(weight, topology, upper)
    if found is not None:
        best, upper = found
    return best, upper, upper


def _scaled_max_load(weight, phy2log, topology: Topology, scale: int) -> int:
    """The placement's max GPU load, as the checker scores it, in tokens x scale (exact:
    every replica count divides scale)."""
    scaled = layer_max_load(weight, phy2log, topology) * scale
    if scaled.denominator != 1:
        raise AssertionError(f"a max load of {scaled / scale} is not a multiple of 1/{scale}")
    return int(scaled)
