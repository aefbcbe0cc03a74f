"""Packing stage: given replica counts, put the replicas on GPUs, S per GPU, min max load.

Exact: S = 1 (one replica per GPU) and S = 2 (pair the largest with the smallest, optimal for
min-max pairs) in closed form; otherwise a greedy first, then CP-SAT on the joint model with
every count fixed, asked only for a packing strictly better than a cutoff.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.backends import CpSatBackend
from eplbench.solvers.bounds import packing_bounds, replica_loads
from eplbench.solvers.model import PlacementModel, Scaling
from eplbench.solvers.result import INFEASIBLE


@dataclass
class Packing:
    """phy2log: [P] best packing found; value: its exact max load; bound: a proven lower
    bound on the optimum for these counts (tokens)."""

    phy2log: np.ndarray
    value: Fraction
    bound: Fraction

    def resolved(self, cutoff: Fraction | None) -> bool:
        """The optimum is known, or known not to beat `cutoff`."""
        return self.bound >= self.value or (cutoff is not None and self.bound >= cutoff)


def expand(counts) -> np.ndarray:
    """[P] expert id of every replica, experts in order."""
    return np.repeat(np.arange(len(counts)), counts)


def greedy_packing(weight, counts, topology: Topology) -> np.ndarray:
    """[P] replicas by decreasing load, each to the least-loaded GPU with room (LPT).
    For S = 2 this pairs the largest with the smallest, which is optimal."""
    experts = expand(counts)
    loads = [Fraction(int(weight[e]), int(counts[e])) for e in experts]
    order = sorted(range(len(experts)), key=lambda i: -loads[i])
    slots = topology.slots_per_gpu
    gpu_load = [Fraction(0)] * topology.num_gpus
    members = [[] for _ in range(topology.num_gpus)]
    for item in order:
        gpu = min((g for g in range(topology.num_gpus) if len(members[g]) < slots),
                  key=gpu_load.__getitem__)
        members[gpu].append(experts[item])
        gpu_load[gpu] += loads[item]
    return np.array([e for gpu in members for e in gpu], dtype=np.int64)


def max_load(weight, counts, phy2log: np.ndarray, topology: Topology) -> Fraction:
    per_gpu = phy2log.reshape(topology.num_gpus, topology.slots_per_gpu)
    return max(sum((Fraction(int(weight[e]), int(counts[e])) for e in gpu), Fraction(0))
               for gpu in per_gpu)


def count_bound(weight, counts, topology: Topology) -> Fraction:
    """The best no-search bound for packing these counts."""
    loads = replica_loads(weight, counts)
    return max(packing_bounds(loads, topology.num_gpus, topology.slots_per_gpu).values())


def pack(weight, counts, topology: Topology, cutoff: Fraction | None, deadline: float,
         bound: Fraction | None = None) -> Packing:
    """Pack the replicas given by `counts` ([E]); search only for packings below `cutoff`.

    bound: a known lower bound for these counts (computed if not given).
    """
    bound = count_bound(weight, counts, topology) if bound is None else bound
    phy2log = greedy_packing(weight, counts, topology)
    value = max_load(weight, counts, phy2log, topology)
    if topology.slots_per_gpu <= 2:
        bound = value  # one or two replicas per GPU: the greedy is optimal
    result = Packing(phy2log, value, bound)
    if result.resolved(cutoff) or time.perf_counter() >= deadline:
        return result
    return _improve_with_cpsat(weight, counts, topology, cutoff, deadline, result)


def _improve_with_cpsat(weight, counts, topology, cutoff, deadline, result: Packing) -> Packing:
    """CP-SAT with every count fixed, asked for a packing strictly below min(value, cutoff)."""
    domains = [[int(c)] for c in counts]
    scaling = Scaling.for_domains(weight, domains, topology.slots_per_gpu)
    target = result.value if cutoff is None else min(result.value, cutoff)
    # a packing below `target` has model load <= these units (strictly below when exact)
    units = target * scaling.scale / scaling.divisor
    upper = math.ceil(units) - 1 if scaling.exact else math.floor(units)
    lower = math.ceil(result.bound * scaling.scale) if scaling.exact else 0
    if upper < lower:
        return Packing(result.phy2log, result.value, max(result.bound, target))
    backend = CpSatBackend()
    model = PlacementModel(backend, weight, topology, Policy.GLOBAL, domains, scaling,
                           lower, upper)
    outcome = backend.solve(max(0.01, deadline - time.perf_counter()), 1, 0)
    phy2log, value, bound = result.phy2log, result.value, result.bound
    if outcome.values:
        candidate = model.placement(outcome.values)
        candidate_value = max_load(weight, counts, candidate, topology)
        if candidate_value < value:
            phy2log, value = candidate, candidate_value
    if outcome.status == INFEASIBLE:
        bound = max(bound, target)
    elif outcome.bound is not None:
        bound = max(bound, min(scaling.tokens(outcome.bound), target))
    return Packing(phy2log, value, min(bound, value))
