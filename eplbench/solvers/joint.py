"""The joint model as a solver (spec §3): search narrowed, certify exactly.

Count domains come from the incumbent's value U: c_e >= ceil(w_e / U) (a better solution
needs it) and c_e <= the slots the other experts leave. If that model is too large, domains
narrow to the incumbent's counts +-1: the search still improves U, but its bound is then not
a proof. The model is hinted with the incumbent; the placement it returns is re-scored by
the checker; its bound counts only when the domains were complete.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.model import PlacementModel, Scaling

# above this many z variables the model is narrowed around the incumbent's counts
MAX_ASSIGNMENT_VARS = 20_000


def solve_joint(weight: np.ndarray, topology: Topology, policy: Policy, backend_class,
                incumbent: np.ndarray, lower: Fraction, deadline: float, workers: int,
                seed: int):
    """(phy2log [P], ub, lb or None when not proven by the model, deterministic time, params).

    incumbent: [P] a placement valid for `policy`; lower: a valid lower bound (tokens).
    """
    upper = layer_max_load(weight, incumbent, topology, policy)
    domains, complete = count_domains(weight, topology, policy, upper, incumbent)
    phy2log, upper, bound, deterministic, params = solve_model(
        weight, topology, policy, backend_class, domains, incumbent, lower, deadline, workers,
        seed)
    params = {"complete_domains": complete, **params}
    return phy2log, upper, bound if complete else None, deterministic, params


def solve_model(weight: np.ndarray, topology: Topology, policy: Policy, backend_class,
                domains: list[list[int]], incumbent: np.ndarray, lower: Fraction,
                deadline: float, workers: int, seed: int):
    """(phy2log [P], ub, lb over placements whose counts lie in `domains` or None, the
    backend's deterministic time, params): the joint model restricted to `domains`, hinted
    with `incumbent` (whose counts lie in them); its placement is re-scored by the checker."""
    upper = layer_max_load(weight, incumbent, topology, policy)
    scaling = Scaling.for_domains(weight, domains, topology.slots_per_gpu)
    params = {"scale": scaling.scale, "divisor": scaling.divisor}
    backend = backend_class()
    model = PlacementModel(backend, weight, topology, policy, domains, scaling,
                           lower_units(weight, topology, scaling, lower),
                           incumbent_units(weight, incumbent, topology, scaling))
    model.add_hint(incumbent)
    result = backend.solve(max(0.01, deadline - time.perf_counter()), workers, seed)
    phy2log = incumbent
    if result.values:
        candidate = model.placement(result.values)
        candidate_load = layer_max_load(weight, candidate, topology, policy)
        if candidate_load < upper:
            phy2log, upper = candidate, candidate_load
    bound = None if result.bound is None else min(scaling.tokens(result.bound), upper)
    return phy2log, upper, bound, result.deterministic_time, params


def count_domains(weight, topology: Topology, policy: Policy, upper: Fraction,
                  phy2log: np.ndarray) -> tuple[list[list[int]], bool]:
    """(allowed counts per expert, whether they are complete, i.e. lose no better solution)."""
    low = [max(1, math.ceil(Fraction(int(w)) / upper)) if upper > 0 else 1 for w in weight]
    spare = topology.num_replicas - sum(low)
    high = [lo + spare for lo in low]
    if policy is Policy.HIERARCHICAL:
        per_node = topology.slots_per_node - (len(weight) // topology.num_nodes - 1)
        high = [min(hi, per_node) for hi in high]
    domains = [list(range(lo, hi + 1)) for lo, hi in zip(low, high)]
    if sum(map(len, domains)) * topology.num_gpus <= MAX_ASSIGNMENT_VARS:
        return domains, True
    counts = np.bincount(phy2log, minlength=len(weight))
    narrowed = [[k for k in (c - 1, c, c + 1) if lo <= k <= hi]
                for c, lo, hi in zip(counts.tolist(), low, high)]
    return narrowed, False


def lower_units(weight, topology: Topology, scaling: Scaling, lower: Fraction) -> int:
    """A valid lower bound on T in model units (floored loads when scaling is coarse)."""
    if scaling.exact:
        return math.ceil(lower * scaling.scale)
    total = int(np.sum(weight)) * scaling.scale - topology.num_replicas * (scaling.divisor - 1)
    return max(0, math.ceil(Fraction(total, scaling.divisor * topology.num_gpus)))


def incumbent_units(weight, phy2log: np.ndarray, topology: Topology, scaling: Scaling) -> int:
    """The incumbent's max GPU load in model units (so that its hint is feasible)."""
    counts = np.bincount(phy2log, minlength=len(weight))
    units = np.array([scaling.units(int(w), int(c)) for w, c in zip(weight, counts)])
    return int(units[phy2log].reshape(topology.num_gpus, -1).sum(-1).max())
