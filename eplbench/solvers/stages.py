"""Stage optimum for gap attribution (SPEC 7): the packing stage alone.

Given a placement, its replica counts are kept and only the packing may change: the joint
model with one allowed count per expert is exactly "the best packing of these replicas"
(under the hierarchical policy the groups may still move between nodes). A heuristic's loss
then splits into packing (its max load - this optimum), replication (this optimum - the
policy's optimum) and hierarchy (hierarchical optimum - global optimum).
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from eplbench.problem import Policy, Topology
from eplbench.solvers.backends import CpSatBackend
from eplbench.solvers.bounds import count_free_bound
from eplbench.solvers.incumbent import layer_max_load
from eplbench.solvers.joint import incumbent_units, lower_units
from eplbench.solvers.model import PlacementModel, Scaling


def packing_bounds(weight: np.ndarray, phy2log: np.ndarray, topology: Topology,
                   policy: Policy, time_limit: float) -> tuple[Fraction, Fraction]:
    """(ub, lb) in tokens of the best max load over placements with the replica counts of
    `phy2log` ([P], valid for `policy`); weight: [E] tokens. ub == lb when proven."""
    weight = np.asarray(weight, dtype=np.int64)
    counts = np.bincount(phy2log, minlength=len(weight))
    upper = layer_max_load(weight, phy2log, topology, policy)
    replica = max(Fraction(int(w), int(c)) for w, c in zip(weight, counts))
    lower = min(upper, max(replica, count_free_bound(weight, topology.num_replicas,
                                                      topology.num_gpus)[0]))
    if lower == upper or time_limit <= 0:
        return upper, lower
    domains = [[int(c)] for c in counts]
    scaling = Scaling.for_domains(weight, domains, topology.slots_per_gpu)
    backend = CpSatBackend()
    model = PlacementModel(backend, weight, topology, policy, domains, scaling,
                           lower_units(weight, topology, scaling, lower),
                           incumbent_units(weight, phy2log, topology, scaling))
    model.add_hint(phy2log)
    deadline = time.perf_counter() + time_limit
    result = backend.solve(max(0.01, deadline - time.perf_counter()), 1, 0)
    if result.values:
        upper = min(upper, layer_max_load(weight, model.placement(result.values), topology,
                                          policy))
    if result.bound is not None:
        lower = max(lower, min(scaling.tokens(result.bound), upper))
    return upper, lower
